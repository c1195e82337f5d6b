#!/usr/bin/env python3
"""mkimage.py ROOTFS NAME:TAG OUT.tar --entrypoint JSON [--user UID:GID] [--env K=V ...]

Writes an image tarball in `docker save` format from a directory, with no daemon and no
registry: one layer (every file owned by root, mtime 0, so the same tree gives the same
digest), a config whose rootfs.diff_ids is the layer's sha256, and manifest.json.
`ctr -n k8s.io images import`, `docker load` and `podman load` accept it.
Adapted from ../shared/real-node/img/mkimage.py."""
import argparse, hashlib, io, json, os, tarfile

ap = argparse.ArgumentParser()
ap.add_argument("rootfs")
ap.add_argument("ref")
ap.add_argument("out")
ap.add_argument("--entrypoint", required=True, help="JSON list")
ap.add_argument("--cmd", help="JSON list")
ap.add_argument("--user")
ap.add_argument("--env", action="append", default=[])
ap.add_argument("--label", action="append", default=[])
args = ap.parse_args()

def norm(ti):
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = 0
    return ti

buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as layer_tar:
    for name in sorted(os.listdir(args.rootfs)):
        layer_tar.add(os.path.join(args.rootfs, name), arcname=name, filter=norm)
layer = buf.getvalue()
diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()

config = {
    "Entrypoint": json.loads(args.entrypoint),
    "Cmd": json.loads(args.cmd) if args.cmd else None,
    "Env": ["PATH=/usr/local/bin:/bin:/usr/bin"] + args.env,
    "WorkingDir": "/",
    "Labels": dict(l.split("=", 1) for l in args.label) or None,
}
if args.user:
    config["User"] = args.user
cfg = {
    "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
    "config": config,
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "deploy/image/mkimage.py"}],
}
cfgb = json.dumps(cfg, sort_keys=True).encode()
cfg_name = hashlib.sha256(cfgb).hexdigest() + ".json"
layer_name = diff_id[7:] + "/layer.tar"
manifest = json.dumps([{"Config": cfg_name, "RepoTags": [args.ref], "Layers": [layer_name]}]).encode()

with tarfile.open(args.out, "w") as t:
    def add(name, data):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mode = 0o644
        t.addfile(ti, io.BytesIO(data))
    d = tarfile.TarInfo(diff_id[7:])
    d.type = tarfile.DIRTYPE
    d.mode = 0o755
    t.addfile(d)
    add(layer_name, layer)
    add(cfg_name, cfgb)
    add("manifest.json", manifest)
print(f"{args.out} {args.ref} {diff_id} {len(layer)} bytes")

//! `ship.yaml` from a commit is untrusted: parsing any text must return a value or an error,
//! never panic, loop, or blow up memory.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = ship_render::config::parse(text) {
            // What parses must be usable without panicking.
            let _ = config.health_timeout();
            let _ = config.promotion_schedule();
            for name in config.environments.keys() {
                let _ = config.tests_for(name).count();
            }
        }
    }
});

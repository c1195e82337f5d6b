{{- define "ship.fullname" -}}
{{- if contains "ship" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-ship" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "ship.labels" -}}
app.kubernetes.io/name: ship
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ship.selectorLabels" -}}
app.kubernetes.io/name: ship
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ship.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "ship.fullname" .) .Values.serviceAccount.name }}{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{/* What Ship may do to the objects of an environment. */}}
{{- define "ship.environmentRules" -}}
- apiGroups: {{ toJson .Values.rbac.apiGroups }}
  resources: ["*"]
  verbs: [get, list, watch, create, update, patch, delete]
# Read only: a Service's EndpointSlices tell when its new Pods receive traffic (health).
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
{{- with .Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end -}}

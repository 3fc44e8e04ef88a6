{{/* Names and labels shared by the templates. */}}
{{- define "aiva.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "aiva.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "aiva.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "aiva.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The Secret holding cluster-secret, database-url and join-token. */}}
{{- define "aiva.secretName" -}}
{{- .Values.existingSecret | default (printf "%s-secrets" (include "aiva.fullname" .)) -}}
{{- end -}}

{{- define "aiva.serverUrl" -}}
{{- .Values.node.serverUrl | default (printf "http://%s-server.%s.svc:%d" (include "aiva.fullname" .) .Release.Namespace (int .Values.server.service.port)) -}}
{{- end -}}

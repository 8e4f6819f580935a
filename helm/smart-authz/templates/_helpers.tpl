{{/* The chart's name, or nameOverride. */}}
{{- define "smart-authz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's object name: fullnameOverride, or release-chart (the release alone when it already holds the chart's name). */}}
{{- define "smart-authz.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- /* The headless Service: the full name cut so that the suffix fits in 63 characters (a
cut after the suffix could give the plain Service's own name). */ -}}
{{- define "smart-authz.headlessName" -}}
{{- printf "%s-headless" (include "smart-authz.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{- define "smart-authz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "smart-authz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "smart-authz.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "smart-authz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: authorizer
{{- end -}}

{{- define "smart-authz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "smart-authz.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "smart-authz.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The service's configuration file, as JSON (the service reads .json files; JSON keeps
integers integers where toToml would write 300.0). `config` from the values, with what the
chart owns set over it: the listeners, and the TLS file paths where the Secrets are mounted.
*/}}
{{- define "smart-authz.config" -}}
{{- $config := deepCopy (default (dict) .Values.config) -}}
{{- /* The service refuses a body budget under two bodies: said here, not by a crash loop. */ -}}
{{- $request := int64 (default 4194304 (get $config "max_request_bytes")) -}}
{{- $buffered := get $config "max_buffered_request_bytes" -}}
{{- if and $buffered (lt (int64 $buffered) (mul 2 $request)) -}}
{{- fail (printf "config.max_buffered_request_bytes (%d) must be at least twice config.max_request_bytes (%d): raise it, and resources.limits.memory with it" (int64 $buffered) $request) -}}
{{- end -}}
{{- $_ := set $config "listen" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) -}}
{{- $_ := set $config "health_listen" (printf "0.0.0.0:%d" (int .Values.ports.health)) -}}
{{- $_ := set $config "shutdown_delay_secs" (int .Values.shutdownDelaySeconds) -}}
{{- $telemetry := deepCopy (default (dict) (get $config "telemetry")) -}}
{{- if .Values.metrics.enabled -}}
{{- $_ := set $telemetry "metrics_listen" (printf "0.0.0.0:%d" (int .Values.ports.metrics)) -}}
{{- else -}}
{{- $_ := set $telemetry "metrics_listen" "" -}}
{{- end -}}
{{- $_ := set $config "telemetry" $telemetry -}}
{{- if .Values.tls.enabled -}}
{{- $tls := dict "cert_file" "/etc/smart-authz/tls/tls.crt" "key_file" "/etc/smart-authz/tls/tls.key" "reload_secs" (int .Values.tls.reloadSeconds) -}}
{{- if .Values.tls.clientCA.secretName -}}
{{- $_ := set $tls "client_ca_file" (printf "/etc/smart-authz/client-ca/%s" .Values.tls.clientCA.key) -}}
{{- end -}}
{{- $_ := set $config "tls" $tls -}}
{{- end -}}
{{- toPrettyJson $config -}}
{{- end -}}

{{/*
The release name is the virtual cluster's name and the name of its Service, so it must be a
DNS-1035 label (Helm itself also allows dots and a leading digit, which a Service name does not).
*/}}
{{- define "vcluster.name" -}}
{{- $name := .Release.Name -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "release name %q cannot name a virtual cluster: use lower-case letters, digits and '-', starting with a letter (it becomes the name of a Service)" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "vcluster.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (printf "vc-%s" (include "vcluster.name" .)) -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "vcluster.labels" -}}
app: vcluster
release: {{ include "vcluster.name" . | quote }}
app.kubernetes.io/name: vcluster
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Selects the virtual cluster's pod. Besides app/release it requires a key under vcluster.loft.sh/,
which the syncer never copies from a tenant's object: a tenant pod labelled app=vcluster,release=<x>
lands in this namespace with those labels, and must not join the Service of the API front door.
*/}}
{{- define "vcluster.selectorLabels" -}}
app: vcluster
release: {{ include "vcluster.name" . | quote }}
vcluster.loft.sh/control-plane: {{ include "vcluster.name" . | quote }}
{{- end -}}

{{/*
Images are {repository, tag, pullPolicy}, or one "repository:tag" string as in vcluster's own chart
of the era (then pulled IfNotPresent).
*/}}
{{- define "vcluster.image" -}}
{{- $image := index . 0 -}}
{{- if kindIs "string" $image -}}
{{- $image -}}
{{- else -}}
{{- printf "%s:%s" $image.repository ($image.tag | default (index . 1)) -}}
{{- end -}}
{{- end -}}

{{- define "vcluster.pullPolicy" -}}
{{- if kindIs "string" . -}}IfNotPresent{{- else -}}{{ .pullPolicy | default "IfNotPresent" }}{{- end -}}
{{- end -}}

{{/*
k3s must not be PID 1: k3s then tries to move itself into a new cgroup (cgroup v2), which needs a
writable /sys/fs/cgroup. This shell stays PID 1, forwards SIGTERM/SIGINT to k3s so it shuts down
cleanly, and exits with k3s' status. $0 is the k3s binary and "$@" the args below, so no argument
is ever re-parsed by the shell.
*/}}
{{- define "vcluster.k3sWrapper" -}}
"$0" "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
wait "$pid"
status=$?
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid"
  status=$?
done
exit "$status"
{{- end -}}

{{- define "pullguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pullguard.fullname" -}}
{{- if contains (include "pullguard.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "pullguard.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "pullguard.labels" -}}
app.kubernetes.io/name: {{ include "pullguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "pullguard.selector" -}}
app.kubernetes.io/name: {{ include "pullguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pullguard.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The node's paths: the preset's, each overridable. */}}
{{- define "pullguard.containerdSocket" -}}
{{- if .Values.node.containerdSocket -}}{{ .Values.node.containerdSocket }}
{{- else if has .Values.node.preset (list "k3s" "rke2") -}}/run/k3s/containerd/containerd.sock
{{- else if eq .Values.node.preset "containerd" -}}/run/containerd/containerd.sock
{{- else -}}{{ fail (printf "node.preset %q: use containerd, k3s or rke2, or set node.containerdSocket" .Values.node.preset) }}
{{- end -}}
{{- end -}}

{{- define "pullguard.nriSocket" -}}
{{- default "/var/run/nri/nri.sock" .Values.node.nriSocket -}}
{{- end -}}

{{- define "pullguard.verifierBinDir" -}}
{{- default "/opt/containerd/image-verifier/bin" .Values.node.verifierBinDir | trimSuffix "/" -}}
{{- end -}}

{{- define "pullguard.registryConfigDir" -}}
{{- if .Values.node.registryConfigDir -}}{{ .Values.node.registryConfigDir | trimSuffix "/" }}
{{- else if eq .Values.node.preset "k3s" -}}/var/lib/rancher/k3s/agent/etc/containerd/certs.d
{{- else if eq .Values.node.preset "rke2" -}}/var/lib/rancher/rke2/agent/etc/containerd/certs.d
{{- else -}}/etc/containerd/certs.d
{{- end -}}
{{- end -}}

{{/* The default rules' rule for pullguard's own image (image.signers), tags or digests. */}}
{{- define "pullguard.selfRule" -}}
{{- $s := .root.Values.image.signers -}}
[[rule]]
name = {{ printf "pullguard-image%s" .suffix | quote }}
match = {{ printf "%s%s" .root.Values.image.repository .match | quote }}
{{- with $s.cosignIdentities }}
cosign_identities = [
{{- range . }}
  { subject = {{ required "image.signers.cosignIdentities[].subject" .subject | quote }}, issuer = {{ required "image.signers.cosignIdentities[].issuer" .issuer | quote }} },
{{- end }}
]
{{- end }}
{{- with $s.cosignKeys }}
cosign_keys = [{{ range $i, $k := . }}{{ if $i }}, {{ end }}{{ $k | quote }}{{ end }}]
{{- end }}
cosign_tlog = {{ $s.cosignTlog }}
{{- end -}}

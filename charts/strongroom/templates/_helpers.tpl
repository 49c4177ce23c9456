{{/*
Names. The Services are named by the code (operator/controllers/pki.ts issues serving certificates for
strongroom-webhook and strongroom-broker), and the webhook configuration and admission policies are cluster-scoped
with fixed names: one Strongroom release per cluster.
*/}}

{{- define "strongroom.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object the chart renders by hand (the generated admission objects carry the builders' own). */}}
{{- define "strongroom.labels" -}}
helm.sh/chart: {{ include "strongroom.chart" . }}
{{ include "strongroom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: strongroom
{{- end -}}

{{/* The operator pods' selector labels. */}}
{{- define "strongroom.selectorLabels" -}}
app.kubernetes.io/name: strongroom
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* The operator's ServiceAccount. */}}
{{- define "strongroom.serviceAccountName" -}}
{{- default "strongroom" .Values.serviceAccount.name -}}
{{- end -}}

{{/* The operator image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "strongroom.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The broker Service's DNS name, which injected sidecars dial. */}}
{{- define "strongroom.brokerHost" -}}
{{- printf "strongroom-broker.%s.svc" .Release.Namespace -}}
{{- end -}}

{{/* Where the PKCS#11 PIN and the GCP credentials are mounted. */}}
{{- define "strongroom.pinDir" -}}/var/run/secrets/strongroom/pkcs11{{- end -}}
{{- define "strongroom.gcpDir" -}}/var/run/secrets/strongroom/gcp{{- end -}}
{{- define "strongroom.auditLogDir" -}}/var/lib/strongroom/audit{{- end -}}

{{/* The operator's flags (operator/config.ts), generated from the values; extraArgs come last and win. */}}
{{- define "strongroom.args" -}}
{{- $v := .Values -}}
- {{ print "--namespace=" (.Release.Namespace) | quote }}
- {{ print "--identity=" "$(POD_NAME)" | quote }}
- {{ print "--log-level=" ($v.logLevel) | quote }}
- {{ print "--workers=" ($v.workers | int) | quote }}
- {{ print "--leader-elect=" "true" | quote }}
- {{ print "--lease-duration=" ($v.leaderElection.leaseDuration) | quote }}
- {{ print "--renew-deadline=" ($v.leaderElection.renewDeadline) | quote }}
- {{ print "--retry-period=" ($v.leaderElection.retryPeriod) | quote }}
- {{ print "--shutdown-timeout=" ($v.shutdownTimeoutSeconds | int) "s" | quote }}
- {{ print "--health-address=" "0.0.0.0:" ($v.ports.health | int) | quote }}
- {{ print "--webhook-address=" "0.0.0.0:" ($v.ports.webhook | int) | quote }}
- {{ print "--broker-address=" "0.0.0.0:" ($v.ports.broker | int) | quote }}
- {{ print "--attest-address=" "0.0.0.0:" ($v.ports.attest | int) | quote }}
- {{ print "--audit-log-dir=" (include "strongroom.auditLogDir" .) | quote }}
- {{ print "--audit-checkpoint-configmap=" ($v.auditLog.persistence.enabled) | quote }}
{{- if and (eq $v.auditLog.signer "kms") (eq $v.kms.provider "local") }}
{{- fail "auditLog.signer kms needs kms.provider gcp or pkcs11: the local KMS keeps its keys in a Secret" }}
{{- end }}
- {{ print "--audit-signer=" ($v.auditLog.signer) | quote }}
- {{ print "--cluster-name=" ($v.clusterName) | quote }}
- {{ print "--trust-domain=" ($v.trustDomain) | quote }}
- {{ print "--kms=" ($v.kms.provider) | quote }}
{{- if eq $v.kms.provider "gcp" }}
- {{ print "--gcp-key-ring=" (required "kms.gcp.keyRing is required with kms.provider gcp (projects/P/locations/L/keyRings/R)" $v.kms.gcp.keyRing) | quote }}
{{- with $v.kms.gcp.endpoint }}
- {{ print "--gcp-endpoint=" (.) | quote }}
{{- end }}
{{- else if eq $v.kms.provider "pkcs11" }}
- {{ print "--pkcs11-module=" (required "kms.pkcs11.module is required with kms.provider pkcs11 (the module's path in the container)" $v.kms.pkcs11.module) | quote }}
- {{ print "--pkcs11-token-label=" (required "kms.pkcs11.tokenLabel is required with kms.provider pkcs11" $v.kms.pkcs11.tokenLabel) | quote }}
{{- if not (kindIs "invalid" $v.kms.pkcs11.slot) }}
- {{ print "--pkcs11-slot=" ($v.kms.pkcs11.slot | int64) | quote }}
{{- end }}
- {{ print "--pkcs11-pin-file=" (include "strongroom.pinDir" .) "/" ($v.kms.pkcs11.pinKey) | quote }}
{{- end }}
{{- with $v.kekRotation }}
- {{ print "--kek-rotation=" (.) | quote }}
{{- end }}
- {{ print "--sidecar-image=" (default (include "strongroom.image" .) $v.sidecar.image) | quote }}
- {{ print "--sidecar-image-pull-policy=" (default $v.image.pullPolicy $v.sidecar.pullPolicy) | quote }}
- {{ print "--sidecar-broker-address=" (default (printf "%s:%d" (include "strongroom.brokerHost" .) (int $v.ports.broker)) $v.sidecar.brokerAddress) | quote }}
- {{ print "--sidecar-attest-address=" (default (printf "%s:%d" (include "strongroom.brokerHost" .) (int $v.ports.attest)) $v.sidecar.attestAddress) | quote }}
{{- range $v.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

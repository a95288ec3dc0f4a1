{{/*
Names, labels and the pieces every mail-proxy container shares (image, env, volumes).
*/}}

{{- define "mail-proxy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name, truncated to leave room for a component suffix. */}}
{{- define "mail-proxy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "mail-proxy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mail-proxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mail-proxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mail-proxy.labels" -}}
helm.sh/chart: {{ include "mail-proxy.chart" . }}
{{ include "mail-proxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mail-proxy
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component: (dict "ctx" $ "component" "api"). */}}
{{- define "mail-proxy.componentLabels" -}}
{{ include "mail-proxy.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mail-proxy.componentSelectorLabels" -}}
{{ include "mail-proxy.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mail-proxy.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "mail-proxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mail-proxy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mail-proxy.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (printf "%s-operator" (include "mail-proxy.fullname" .)) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret names: the user's own Secret when given, else the one this chart generates. */}}
{{- define "mail-proxy.databaseSecretName" -}}
{{- default (printf "%s-database" (include "mail-proxy.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{- define "mail-proxy.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}GMP_DATABASE_URL{{ end }}
{{- end }}

{{- define "mail-proxy.encryptionKeySecretName" -}}
{{- default (printf "%s-encryption-key" (include "mail-proxy.fullname" .)) .Values.encryptionKey.existingSecret }}
{{- end }}

{{- define "mail-proxy.encryptionKeySecretKey" -}}
{{- if .Values.encryptionKey.existingSecret }}{{ .Values.encryptionKey.existingSecretKey }}{{ else }}MAIL_PROXY_ENCRYPTION_KEY{{ end }}
{{- end }}

{{- define "mail-proxy.adminTokenSecretName" -}}
{{- default (printf "%s-admin-token" (include "mail-proxy.fullname" .)) .Values.adminToken.existingSecret }}
{{- end }}

{{- define "mail-proxy.adminTokenSecretKey" -}}
{{- if .Values.adminToken.existingSecret }}{{ .Values.adminToken.existingSecretKey }}{{ else }}GMP_API_TOKEN{{ end }}
{{- end }}

{{- define "mail-proxy.downloadSecretName" -}}
{{- default (printf "%s-download-secret" (include "mail-proxy.fullname" .)) .Values.downloadSecret.existingSecret }}
{{- end }}

{{- define "mail-proxy.downloadSecretKey" -}}
{{- if .Values.downloadSecret.existingSecret }}{{ .Values.downloadSecret.existingSecretKey }}{{ else }}GMP_DOWNLOAD_SECRET{{ end }}
{{- end }}

{{/* What API and sender pods need for large-file links: the signing secret, the public URL. */}}
{{- define "mail-proxy.downloadEnv" -}}
- name: GMP_DOWNLOAD_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "mail-proxy.downloadSecretName" . }}
      key: {{ include "mail-proxy.downloadSecretKey" . }}
{{- with .Values.largeFiles.downloadBaseUrl }}
- name: GMP_DOWNLOAD_BASE_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
A value kept across upgrades: the existing Secret's data when the release already made it,
else a fresh one. (dict "ctx" $ "name" <secret> "key" <data key> "fresh" <base64 value>).
`lookup` is empty under `helm template`, so offline renders always show a fresh value.
*/}}
{{- define "mail-proxy.keptSecretData" -}}
{{- $found := lookup "v1" "Secret" .ctx.Release.Namespace .name }}
{{- if and $found $found.data (hasKey $found.data .key) }}
{{- index $found.data .key }}
{{- else }}
{{- .fresh }}
{{- end }}
{{- end }}

{{/* Environment every mail-proxy container gets: database, key, shared settings. */}}
{{- define "mail-proxy.commonEnv" -}}
- name: GMP_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "mail-proxy.databaseSecretName" . }}
      key: {{ include "mail-proxy.databaseSecretKey" . }}
- name: MAIL_PROXY_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "mail-proxy.encryptionKeySecretName" . }}
      key: {{ include "mail-proxy.encryptionKeySecretKey" . }}
{{- /* Keys that still decrypt during a rotation (see the README's runbook); absent: none. */}}
- name: MAIL_PROXY_PREVIOUS_ENCRYPTION_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "mail-proxy.encryptionKeySecretName" . }}
      key: MAIL_PROXY_PREVIOUS_ENCRYPTION_KEYS
      optional: true
- name: GMP_LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: GMP_LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
- name: GMP_DB_POOL_MIN
  value: {{ .Values.config.dbPoolMin | quote }}
- name: GMP_DB_POOL_MAX
  value: {{ .Values.config.dbPoolMax | quote }}
- name: GMP_OUTBOUND_ALLOW
  value: {{ join "," .Values.config.outboundAllow | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The writable /tmp of a read-only root filesystem. */}}
{{- define "mail-proxy.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end }}

{{- define "mail-proxy.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Pod-level fields shared by every workload. */}}
{{- define "mail-proxy.podCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Scheduling fields of one component's values: (dict "v" .Values.api). */}}
{{- define "mail-proxy.scheduling" -}}
{{- with .v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Refuse a real install that has no database; offline renders (lookup empty) still work. */}}
{{- define "mail-proxy.requireDatabase" -}}
{{- if and (not .Values.database.url) (not .Values.database.existingSecret) }}
{{- if lookup "v1" "Namespace" "" .Release.Namespace }}
{{- fail "mail-proxy needs a database: set database.url or database.existingSecret" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Namespaces the operator serves: the listed ones, or the release's own (never "all"
unless operator.clusterWide). */}}
{{- define "mail-proxy.operatorNamespaces" -}}
{{- if .Values.operator.clusterWide }}{{- else if .Values.operator.watchNamespaces }}{{ join "," .Values.operator.watchNamespaces }}{{ else }}{{ .Release.Namespace }}{{ end }}
{{- end }}

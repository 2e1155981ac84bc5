{{/* Names. */}}
{{- define "keybrake.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keybrake.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "keybrake.redisName" -}}
{{- printf "%s-redis" (include "keybrake.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keybrake.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keybrake.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels. */}}
{{- define "keybrake.labels" -}}
app.kubernetes.io/name: {{ include "keybrake.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "keybrake.sharedLabels" . }}
{{- end }}

{{/* The labels besides name and instance (pod templates add them to their selector labels). */}}
{{- define "keybrake.sharedLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keybrake
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "keybrake.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keybrake.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end }}

{{- define "keybrake.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "keybrake.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{/* The proxy image reference: the digest wins over the tag. */}}
{{- define "keybrake.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "keybrake.redisImage" -}}
{{- $image := .Values.redis.bundled.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository $image.tag }}
{{- end }}
{{- end }}

{{/* Secret names: the user's existingSecret, or the one the chart makes. */}}
{{- define "keybrake.vendorSecretName" -}}
{{- default (printf "%s-vendors" (include "keybrake.fullname" .)) .Values.vendors.existingSecret }}
{{- end }}

{{- define "keybrake.issuerSecretName" -}}
{{- default (printf "%s-issuer-keys" (include "keybrake.fullname" .)) .Values.issuerKeys.existingSecret }}
{{- end }}

{{- define "keybrake.auditSecretName" -}}
{{- default (printf "%s-audit-signing-key" (include "keybrake.fullname" .)) .Values.auditSigningKey.existingSecret }}
{{- end }}

{{/* The Secret holding KEYBRAKE_REDIS_URL (bundled: also REDIS_PASSWORD). */}}
{{- define "keybrake.redisSecretName" -}}
{{- if eq .Values.redis.mode "bundled" }}
{{- default (include "keybrake.redisName" .) .Values.redis.bundled.auth.existingSecret }}
{{- else }}
{{- default (printf "%s-redis-url" (include "keybrake.fullname" .)) .Values.redis.external.existingSecret }}
{{- end }}
{{- end }}

{{/*
The built-in vendors' blocks of values.yaml (`vendors.<name>`, generated from the vendor registry
by `pnpm run generate:vendors`): no template names a vendor. A block's fields besides `enabled` are
its secrets, each a Secret key named `<NAME>_<FIELD>` (apiKey of acme-pay: ACME_PAY_API_KEY;
"-" in a name becomes "_"), which the proxy reads as `<KEY>_FILE`. As JSON:
[{"vendor", "field", "env"}] of the enabled vendors, in name order.
*/}}
{{- define "keybrake.vendorSecrets" -}}
{{- $secrets := list }}
{{- range $vendor, $block := omit .Values.vendors "existingSecret" }}
{{- if $block.enabled }}
{{- range $field := omit $block "enabled" | keys | sortAlpha }}
{{- $env := printf "%s_%s" ($vendor | upper | replace "-" "_") ($field | snakecase | upper) }}
{{- $secrets = append $secrets (dict "vendor" $vendor "field" $field "env" $env) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $secrets }}
{{- end }}

{{/* The Secret keys (and `<KEY>_FILE` variables) of every enabled vendor, as a JSON list. */}}
{{- define "keybrake.vendorKeys" -}}
{{- $keys := list }}
{{- range include "keybrake.vendorSecrets" . | fromJsonArray }}{{ $keys = append $keys .env }}{{ end }}
{{- toJson $keys }}
{{- end }}

{{/* A vendor's `config.<name>BaseUrl` key: its name in lower camel case (acme-pay: acmePayBaseUrl). */}}
{{- define "keybrake.baseUrlKey" -}}
{{- $parts := splitList "-" . }}
{{- $key := first $parts }}
{{- range rest $parts }}{{ $key = print $key (title .) }}{{ end }}
{{- printf "%sBaseUrl" $key }}
{{- end }}

{{/* The ConfigMap holding the issuers file (KEYBRAKE_ISSUERS_FILE) and its JWKS files, or nothing when not configured. */}}
{{- define "keybrake.issuersFileConfigMap" -}}
{{- with .Values.workloadIdentity }}
{{- if .existingConfigMap }}{{ .existingConfigMap }}
{{- else if .issuersFile }}{{ printf "%s-issuers-file" (include "keybrake.fullname" $) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The ConfigMap holding the declared vendors' file (KEYBRAKE_VENDORS_FILE), or nothing when none is declared. */}}
{{- define "keybrake.vendorsFileConfigMap" -}}
{{- with .Values.declaredVendors }}
{{- if .existingConfigMap }}{{ .existingConfigMap }}
{{- else if .file }}{{ printf "%s-vendors-file" (include "keybrake.fullname" $) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A value kept across upgrades: the one already in the cluster's Secret (lookup), else a generated
one. `helm template` has no cluster, so it generates every time; use existingSecret for GitOps.
*/}}
{{- define "keybrake.keptSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .context.Release.Namespace .secret }}
{{- if and $existing $existing.data (hasKey $existing.data .key) }}
{{- index $existing.data .key | b64dec }}
{{- else }}
{{- .generated }}
{{- end }}
{{- end }}

{{/* Refuses value sets that cannot work, with a message saying what to change. */}}
{{- define "keybrake.validate" -}}
{{- $mode := .Values.redis.mode }}
{{- if and (gt (int .Values.replicaCount) 1) (eq $mode "none") }}
{{- fail (printf "replicaCount is %d, but redis.mode is none: the embedded SQLite store belongs to one process, so replicas would each keep their own caps, spend and audit chain. Set redis.mode=bundled (a Redis in this release) or redis.mode=external with redis.external.url or redis.external.existingSecret, or set replicaCount=1." (int .Values.replicaCount)) }}
{{- end }}
{{- if and (eq $mode "external") (not .Values.redis.external.url) (not .Values.redis.external.existingSecret) }}
{{- fail "redis.mode is external: set redis.external.url or redis.external.existingSecret (a Secret with the key KEYBRAKE_REDIS_URL)." }}
{{- end }}
{{- if and (ne $mode "external") (or .Values.redis.external.url .Values.redis.external.existingSecret) }}
{{- fail (printf "redis.external is set but redis.mode is %s: set redis.mode=external to use it." $mode) }}
{{- end }}
{{- if and (eq $mode "external") .Values.networkPolicy.enabled (empty .Values.networkPolicy.externalRedisEgress.to) }}
{{- fail "redis.mode is external and networkPolicy.enabled: set networkPolicy.externalRedisEgress.to (e.g. an ipBlock of your Redis) or the proxy cannot reach it." }}
{{- end }}
{{- if not .Values.vendors.existingSecret }}
{{- range $vendor, $block := omit .Values.vendors "existingSecret" }}
{{- if $block.enabled }}
{{- $fields := list }}
{{- $missing := false }}
{{- range $field := omit $block "enabled" | keys | sortAlpha }}
{{- $fields = append $fields (printf "vendors.%s.%s" $vendor $field) }}
{{- if not (index $block $field) }}{{ $missing = true }}{{ end }}
{{- end }}
{{- if $missing }}
{{- fail (printf "vendors.%s.enabled: set %s (e.g. --set-file) or vendors.existingSecret." $vendor (join " and " $fields)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.workloadIdentity }}
{{- if and .issuersFile .existingConfigMap }}
{{- fail "workloadIdentity: set issuersFile or existingConfigMap, not both." }}
{{- end }}
{{- if and .jwksFiles (not .issuersFile) }}
{{- fail "workloadIdentity.jwksFiles: set workloadIdentity.issuersFile, the file that names them (with existingConfigMap, put them in your ConfigMap)." }}
{{- end }}
{{- if hasKey .jwksFiles "issuers.yaml" }}
{{- fail "workloadIdentity.jwksFiles: issuers.yaml is the issuers file itself; name the JWKS file differently." }}
{{- end }}
{{- end }}
{{- with .Values.declaredVendors }}
{{- if and .file .existingConfigMap }}
{{- fail "declaredVendors: set file or existingConfigMap, not both." }}
{{- end }}
{{- if and .secretKeys (not .existingSecret) }}
{{- fail "declaredVendors.secretKeys: set declaredVendors.existingSecret, the Secret that holds them." }}
{{- end }}
{{- if and .existingSecret (not .secretKeys) }}
{{- fail "declaredVendors.existingSecret: list its keys the declared vendors read in declaredVendors.secretKeys." }}
{{- end }}
{{- if and .secretKeys (not (or .file .existingConfigMap)) }}
{{- fail "declaredVendors.secretKeys: set declaredVendors.file or declaredVendors.existingConfigMap, the vendors that use them." }}
{{- end }}
{{- $taken := include "keybrake.vendorKeys" $ | fromJsonArray }}
{{- range .secretKeys }}
{{- if or (has . $taken) (hasPrefix "KEYBRAKE_" .) }}
{{- fail (printf "declaredVendors.secretKeys: %s is already a secret of the chart (an enabled built-in vendor's, or KEYBRAKE_*): name the declared vendor's secret.env differently." .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.issuerKeys.existingSecret .Values.issuerKeys.keys }}
{{- fail "issuerKeys: set existingSecret or keys, not both." }}
{{- end }}
{{- if and .Values.auditSigningKey.existingSecret .Values.auditSigningKey.pem }}
{{- fail "auditSigningKey: set existingSecret or pem, not both." }}
{{- end }}
{{- end }}

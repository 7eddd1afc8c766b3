{{/*
Names and labels.
*/}}
{{- define "rodent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rodent.fullname" -}}
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

{{- define "rodent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object carries except the test pod (see rodent.testLabels). */}}
{{- define "rodent.labels" -}}
helm.sh/chart: {{ include "rodent.chart" . }}
{{ include "rodent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* What the Service, the PDB and the Deployment select the serving pods by. */}}
{{- define "rodent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rodent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The `helm test` pod's labels: deliberately without app.kubernetes.io/name, so the Service never
routes traffic to it and the PodDisruptionBudget never counts it.
*/}}
{{- define "rodent.testLabels" -}}
helm.sh/chart: {{ include "rodent.chart" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
app.kubernetes.io/part-of: {{ include "rodent.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "rodent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rodent.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rodent.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding the admin token, or nothing when the admin routes are off. */}}
{{- define "rodent.adminTokenSecret" -}}
{{- if .Values.adminToken.existingSecret }}
{{- .Values.adminToken.existingSecret }}
{{- else if .Values.adminToken.value }}
{{- printf "%s-admin" (include "rodent.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The fewest pods that run: what decides whether a PodDisruptionBudget makes sense. */}}
{{- define "rodent.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}
{{- .Values.autoscaling.minReplicas | int64 }}
{{- else }}
{{- .Values.replicaCount | int64 }}
{{- end }}
{{- end }}

{{/*
Durations, in rodent's syntax: 500ms, 5s, 2m, 1h or a bare 0. Takes (list "value.path" raw) and
gives milliseconds; the schema already enforces the syntax, this names the value if it slips by.
*/}}
{{- define "rodent.durationMs" -}}
{{- $name := index . 0 }}
{{- $raw := index . 1 | toString | trim }}
{{- if not (regexMatch "^(0|[0-9]+(ms|s|m|h))$" $raw) }}
{{- fail (printf "%s: %q is not a duration such as 500ms, 5s or 2m (units: ms, s, m, h)" $name $raw) }}
{{- end }}
{{- $digits := regexFind "^[0-9]+" $raw }}
{{- $unit := trimPrefix $digits $raw }}
{{- $perUnit := dict "" 0 "ms" 1 "s" 1000 "m" 60000 "h" 3600000 }}
{{- mul ($digits | int64) (get $perUnit $unit) }}
{{- end }}

{{/* Milliseconds written the way rodent writes them: the largest exact unit. */}}
{{- define "rodent.formatMs" -}}
{{- $ms := . | int64 }}
{{- if eq $ms 0 }}0s
{{- else if eq (mod $ms 3600000) 0 }}{{ div $ms 3600000 }}h
{{- else if eq (mod $ms 60000) 0 }}{{ div $ms 60000 }}m
{{- else if eq (mod $ms 1000) 0 }}{{ div $ms 1000 }}s
{{- else }}{{ $ms }}ms
{{- end }}
{{- end }}

{{/*
The shutdown timing, derived from .Values.shutdown in this one place and checked with rodent's
own rule, so that a chart that renders never yields a pod that refuses to start (exit 78) or one
that is killed with requests still running. Gives YAML; use with fromYaml.

  margin    = clamp(grace / 10, 100ms, 5s)      (rodent's safety margin)
  required:   drainDelay + requestTimeout <= grace - margin
  required:   readiness periodSeconds x failureThreshold < drainDelay + preStopSleepSeconds
  terminationGracePeriodSeconds = grace + preStopSleepSeconds (the sleep runs before SIGTERM,
                                  inside the pod's grace period)
*/}}
{{- define "rodent.timing" -}}
{{- $s := .Values.shutdown }}
{{- $graceSeconds := $s.gracePeriodSeconds | int64 }}
{{- $preStopSeconds := $s.preStopSleepSeconds | int64 }}
{{- $graceMs := mul $graceSeconds 1000 }}
{{- $marginMs := min (max (div $graceMs 10) 100) 5000 }}
{{- $availableMs := sub $graceMs $marginMs }}
{{- $drainMs := include "rodent.durationMs" (list "shutdown.drainDelay" $s.drainDelay) | int64 }}
{{- $timeoutMs := include "rodent.durationMs" (list "shutdown.requestTimeout" $s.requestTimeout) | int64 }}
{{- $neededMs := add $drainMs $timeoutMs }}
{{- if gt $neededMs $availableMs }}
{{- fail (printf "\n\nshutdown timing does not fit: shutdown.drainDelay (%s) + shutdown.requestTimeout (%s) = %s, but shutdown.gracePeriodSeconds (%ds) minus rodent's safety margin (%s: a tenth of the grace, at least 100ms, at most 5s) leaves %s.\nThe rule is drainDelay + requestTimeout <= gracePeriodSeconds - margin: a request admitted at the end of the drain must finish before the grace period ends, and rodent refuses to start (exit 78) otherwise.\nLower shutdown.drainDelay or shutdown.requestTimeout, or raise shutdown.gracePeriodSeconds (to at least %ds)."
    (include "rodent.formatMs" $drainMs)
    (include "rodent.formatMs" $timeoutMs)
    (include "rodent.formatMs" $neededMs)
    $graceSeconds
    (include "rodent.formatMs" $marginMs)
    (include "rodent.formatMs" $availableMs)
    (include "rodent.minGraceSeconds" $neededMs | int64)) }}
{{- end }}
{{- $r := .Values.probes.readiness }}
{{- $detectMs := mul ($r.periodSeconds | int64) ($r.failureThreshold | int64) 1000 }}
{{- $windowMs := add $drainMs (mul $preStopSeconds 1000) }}
{{- if ge $detectMs $windowMs }}
{{- fail (printf "\n\nthe drain window is too short for the readiness probe: probes.readiness.periodSeconds (%d) x probes.readiness.failureThreshold (%d) = %s to notice a failing /readyz, but shutdown.drainDelay (%s) + shutdown.preStopSleepSeconds (%ds) = %s.\nThe rule is periodSeconds x failureThreshold < drainDelay + preStopSleepSeconds: the pod must leave the Service's endpoints while rodent still serves, or requests routed to it in the meantime are refused.\nRaise shutdown.drainDelay, or poll readiness more often."
    ($r.periodSeconds | int64)
    ($r.failureThreshold | int64)
    (include "rodent.formatMs" $detectMs)
    (include "rodent.formatMs" $drainMs)
    $preStopSeconds
    (include "rodent.formatMs" $windowMs)) }}
{{- end }}
shutdownGrace: {{ printf "%ds" $graceSeconds | quote }}
drainDelay: {{ include "rodent.formatMs" $drainMs | quote }}
requestTimeout: {{ include "rodent.formatMs" $timeoutMs | quote }}
terminationGracePeriodSeconds: {{ add $graceSeconds $preStopSeconds }}
preStopSleepSeconds: {{ $preStopSeconds }}
{{- end }}

{{/*
The smallest whole grace, in seconds, that fits the given drain + timeout milliseconds: the
margin is a tenth of the grace up to 5s, so grace >= needed / 0.9 below 50s, needed + 5s above.
*/}}
{{- define "rodent.minGraceSeconds" -}}
{{- $neededMs := . | int64 }}
{{- $tenthRule := div (add (mul $neededMs 10) 8999) 9000 }}
{{- $capRule := div (add $neededMs 5000 999) 1000 }}
{{- if le (mul $tenthRule 100) 5000 }}{{ max $tenthRule 1 }}{{ else }}{{ $capRule }}{{ end }}
{{- end }}

{{/*
Everything the schema cannot say about values, checked once (included by the Deployment).
*/}}
{{- define "rodent.validate" -}}
{{- $managed := list "RODENT_PORT" "RODENT_MANAGEMENT_PORT" "RODENT_PID_FILE" "RODENT_SHUTDOWN_GRACE" "RODENT_DRAIN_DELAY" "RODENT_REQUEST_TIMEOUT" "RODENT_MAX_CONNECTIONS" "RODENT_ADMIN_TOKEN" "RODENT_FAULT_ERROR_RATE" "RODENT_FAULT_DELAY" "RODENT_FAULT_UNREADY" "RODENT_FAULT_UNHEALTHY" "RODENT_BACKENDS" "RODENT_ENV_FILE" "RODENT_TLS_CERT" "RODENT_TLS_KEY" }}
{{- $names := list }}
{{- range .Values.env }}{{ $names = append $names (list "env" .name) }}{{ end }}
{{- range $name, $value := .Values.config }}{{ $names = append $names (list "config" $name) }}{{ end }}
{{- range $names }}
{{- $where := index . 0 }}
{{- $name := index . 1 }}
{{- if eq $name "RODENT_PID_FILE" }}
{{- fail (printf "\n\n%s: RODENT_PID_FILE is set by the chart, to empty: the root filesystem is read-only, and `kubectl exec` finds rodent as the container's PID 1 without a PID file." $where) }}
{{- else if has $name $managed }}
{{- fail (printf "\n\n%s: %s is set by the chart (from containerPort, managementPort, shutdown.*, maxConnections, adminToken.*, faults.*, backends, config or tls.secretName); set those values instead, so the probes, the grace period and the variable cannot disagree." $where $name) }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.config }}
{{- if contains "\r" (toString $value) }}
{{- fail (printf "\n\nconfig.%s: a carriage return cannot be written into the env file." $name) }}
{{- end }}
{{- end }}
{{- if and .Values.probes.grpc.enabled .Values.tls.secretName (not (include "rodent.management" .)) }}
{{- fail "\n\nprobes.grpc: Kubernetes' gRPC probe speaks plaintext, and with tls.secretName containerPort speaks TLS; set managementPort too (its gRPC health service is plain), or keep the HTTPS probes." }}
{{- end }}
{{- if and (include "rodent.management" .) (eq (.Values.managementPort | int64) (.Values.containerPort | int64)) }}
{{- fail (printf "\n\nmanagementPort (%d) must differ from containerPort: it takes the probes, /metrics and the admin API away from the application's port." (.Values.managementPort | int64)) }}
{{- end }}
{{- if and .Values.adminToken.existingSecret .Values.adminToken.value }}
{{- fail "\n\nadminToken: set either existingSecret or value, not both." }}
{{- end }}
{{- $u := .Values.rollingUpdate }}
{{- if and (has (toString $u.maxSurge) (list "0" "0%")) (has (toString $u.maxUnavailable) (list "0" "0%")) }}
{{- fail "\n\nrollingUpdate: maxSurge and maxUnavailable cannot both be 0 (a rollout could never make progress); keep maxUnavailable 0 and maxSurge at least 1 to never lose capacity." }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (.Values.autoscaling.minReplicas | int64) (.Values.autoscaling.maxReplicas | int64)) }}
{{- fail (printf "\n\nautoscaling: minReplicas (%d) is greater than maxReplicas (%d)." (.Values.autoscaling.minReplicas | int64) (.Values.autoscaling.maxReplicas | int64)) }}
{{- end }}
{{- end }}

{{/*
"true" when rodent serves its probes, /metrics and the admin API on a port of their own
(managementPort), empty otherwise.
*/}}
{{- define "rodent.management" -}}
{{- if not (kindIs "invalid" .Values.managementPort) }}true{{ end }}
{{- end }}

{{/* The container port the probes, /metrics and the admin API answer on. */}}
{{- define "rodent.managementPortName" -}}
{{- if include "rodent.management" . }}management{{ else }}http{{ end }}
{{- end }}

{{/* Where the env file made of .Values.config and the TLS Secret are mounted. */}}
{{- define "rodent.configDir" -}}/etc/rodent/config{{- end }}
{{- define "rodent.tlsDir" -}}/etc/rodent/tls{{- end }}

{{/* "HTTPS" when the port the probes answer on serves HTTPS, "HTTP" otherwise. */}}
{{- define "rodent.probeScheme" -}}
{{- if and .Values.tls.secretName (not (include "rodent.management" .)) }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/*
.Values.config as a dotenv file: every value double-quoted, with the characters dotenv gives a
meaning escaped (backslash, double quote, dollar), and line breaks as \n. Whole numbers are
written whole (YAML numbers arrive as floats: 1048576, not 1.048576e+06).
*/}}
{{- define "rodent.envFile" -}}
# Written by the rodent chart from .Values.config; rodent watches this file.
{{- range $name, $value := .Values.config }}
{{- $text := toString $value }}
{{- if and (kindIs "float64" $value) (eq (floor $value) $value) }}
{{- $text = int64 $value | toString }}
{{- end }}
{{- $text = $text | replace "\\" "\\\\" | replace "\"" "\\\"" | replace "$" "\\$" | replace "\n" "\\n" }}
{{ $name }}="{{ $text }}"
{{- end }}
{{- end }}

{{/*
How the startup and readiness probes ask: `httpGet` of `path` on the port the probes answer on,
or, with probes.grpc.enabled, Kubernetes' own `grpc:` probe, which calls
grpc.health.v1.Health/Check in plaintext: SERVING once ready, NOT_SERVING from the first
SIGTERM, as /readyz. A gRPC probe names its port by number; it is the management port when
there is one (which serves the health service too), containerPort otherwise.
Called with (dict "root" $ "path" "/readyz").
*/}}
{{- define "rodent.probeAction" -}}
{{- $root := .root }}
{{- if $root.Values.probes.grpc.enabled }}
grpc:
  port: {{ include "rodent.grpcProbePort" $root }}
  service: {{ $root.Values.probes.grpc.service | quote }}
{{- else }}
httpGet:
  path: {{ .path }}
  port: {{ include "rodent.managementPortName" $root }}
  scheme: {{ include "rodent.probeScheme" $root }}
{{- end }}
{{- end }}

{{/* The port number Kubernetes' gRPC probes call. */}}
{{- define "rodent.grpcProbePort" -}}
{{- if include "rodent.management" . }}{{ .Values.managementPort | int64 }}{{ else }}{{ .Values.containerPort | int64 }}{{ end }}
{{- end }}

{{/*
The reference service's faults and backends, from .Values.faults and .Values.backends: only
what is set, so a chart with none of them renders no variable for them.
*/}}
{{- define "rodent.faultEnv" -}}
{{- $f := .Values.faults }}
{{- if and $f.errorRate (gt (float64 $f.errorRate) 0.0) }}
- name: RODENT_FAULT_ERROR_RATE
  value: {{ $f.errorRate | toString | quote }}
{{- end }}
{{- if $f.delay }}
- name: RODENT_FAULT_DELAY
  value: {{ $f.delay | quote }}
{{- end }}
{{- if $f.unready }}
- name: RODENT_FAULT_UNREADY
  value: "true"
{{- end }}
{{- if $f.unhealthy }}
- name: RODENT_FAULT_UNHEALTHY
  value: "true"
{{- end }}
{{- with .Values.backends }}
- name: RODENT_BACKENDS
  value: {{ join "," . | quote }}
{{- end }}
{{- end }}

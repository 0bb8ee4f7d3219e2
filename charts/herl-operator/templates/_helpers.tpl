{{/* Names, labels and small shared pieces. */}}

{{- define "herl-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Full name: "<release>-herl-operator"; the release name alone when it already contains the chart name;
"<release>-operator" when it contains "herl" (release "herl" gives "herl-operator", not "herl-herl-operator"). Capped at 52 characters so suffixed names ("-dashboard-herl-training") stay within 63.
*/}}
{{- define "herl-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else if and (not .Values.nameOverride) (contains "herl" .Release.Name) -}}
{{- printf "%s-operator" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "herl-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator pod; never change them after a release (selectors are immutable). */}}
{{- define "herl-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "herl-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels of every object of the chart. */}}
{{- define "herl-operator.labels" -}}
helm.sh/chart: {{ include "herl-operator.chart" . }}
app.kubernetes.io/name: {{ include "herl-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: herl
{{- end -}}

{{- define "herl-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "herl-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "herl-operator.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
The operator's RBAC rules, generated from herl_operator.rbac into files/rbac-rules.yaml (`herl generate`).
Returns the parsed document: {clusterRules: [...], namespacedRules: [...]}.
*/}}
{{- define "herl-operator.rbacRules" -}}
{{- $doc := .Files.Get "files/rbac-rules.yaml" | fromYaml -}}
{{- if or (not $doc) (hasKey $doc "Error") -}}
{{- fail "files/rbac-rules.yaml is missing or invalid: run `herl generate` in the herl repository" -}}
{{- end -}}
{{- toYaml $doc -}}
{{- end -}}

{{/* True ("true") when any Prometheus Operator object is rendered. */}}
{{- define "herl-operator.monitoringEnabled" -}}
{{- $m := .Values.monitoring -}}
{{- if or $m.serviceMonitor.enabled $m.podMonitor.enabled $m.prometheusRule.enabled -}}true{{- end -}}
{{- end -}}

{{/* Prometheus duration in milliseconds (only the units the schema allows), to compare timeout and interval. */}}
{{- define "herl-operator.millis" -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" . -1 -}}
{{- $n := regexFind "^[0-9]+" . | int -}}
{{- $u := regexFind "[a-z]+$" . -}}
{{- $mult := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- $total = add $total (mul $n (get $mult $u)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/* The objects' base name: the release name (install it as "agent-operator" to get the
     kustomize base's names) unless fullnameOverride says otherwise. */}}
{{- define "fao.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries (the kustomize base sets the first two). */}}
{{- define "fao.labels" -}}
app.kubernetes.io/name: flyte-agent-operator
app.kubernetes.io/part-of: flyte-agent-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The operator's pods: the Deployment's selector and template labels, the Service's and PDB's selector. */}}
{{- define "fao.selectorLabels" -}}
app.kubernetes.io/name: flyte-agent-operator
app.kubernetes.io/component: operator
{{- end -}}

{{- define "fao.leaseName" -}}
{{- default (include "fao.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* The shard ring: its owner-table Lease and the member Leases' label value. */}}
{{- define "fao.shardRing" -}}
{{- default (printf "%s-shards" (include "fao.fullname" .)) .Values.sharding.ring -}}
{{- end -}}

{{- define "fao.signingSecretName" -}}
{{- default (printf "%s-signing-key" (include "fao.fullname" .)) .Values.signingSecretName -}}
{{- end -}}

{{/* Namespaces whose AgentTasks the operator drives when not cluster-wide. */}}
{{- define "fao.watchedNamespaces" -}}
{{- if .Values.watch.namespaces -}}
{{- toJson .Values.watch.namespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{- define "fao.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

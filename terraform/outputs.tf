output "ingest_url" {
  description = "The ingest function's URL: POST /v1/notifications (empty until deploy_functions)."
  value       = var.deploy_functions ? module.functions[0].urls.ingest : ""
}

output "callback_base_url" {
  description = "Base URL providers are told to call back (HERALD_CALLBACK_BASE_URL)."
  value       = local.callback_base_url
}

output "service_accounts" {
  description = "Component (function, reconciler, pipelines, scheduler, builder) -> service account email."
  value       = module.service_accounts.emails
}

output "topic_ids" {
  description = "Topic key (requests, callbacks, dead_letter) -> topic id."
  value       = module.pubsub.topic_ids
}

output "subscription_ids" {
  description = "Subscription key -> subscription id."
  value       = module.pubsub.subscription_ids
}

output "dataset_id" {
  description = "The BigQuery dataset (HERALD_DATASET)."
  value       = module.bigquery.dataset_id
}

output "state_database" {
  description = "Herald's Firestore state database (HERALD_STATE_DATABASE); users and devices stay in the app's (default) database."
  value       = module.firestore.database
}

output "secret_ids" {
  description = "Environment variable -> Secret Manager secret id whose value it gets; add each value with `gcloud secrets versions add`."
  value       = module.secrets.secret_ids
}

output "image_repository" {
  description = "Artifact Registry path for the Flex Template launcher images (REGION-docker.pkg.dev/PROJECT/REPOSITORY)."
  value       = "${google_artifact_registry_repository.images.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "template_gcs_paths" {
  description = "Pipeline -> gs:// path its Flex Template spec must be built to."
  value       = local.template_gcs_paths
}

output "dataflow_job_ids" {
  description = "Pipeline -> Dataflow job id (empty until deploy_pipelines)."
  value       = var.deploy_pipelines ? module.dataflow[0].job_ids : {}
}

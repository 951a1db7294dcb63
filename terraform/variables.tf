variable "project_id" {
  type        = string
  description = "The GCP project Herald runs in: its topics, tables, Firestore databases, functions and jobs (HERALD_PROJECT)."
}

variable "region" {
  type        = string
  description = "Region of the functions, the Dataflow jobs, the Scheduler jobs and the Artifact Registry repository, e.g. europe-west1."
}

variable "bigquery_location" {
  type        = string
  description = "Location of the BigQuery dataset (a region, or the EU / US multi-region)."
  default     = "EU"
}

variable "firestore_location" {
  type        = string
  description = "Location of the herald-state Firestore database (a region such as europe-west1, or a multi-region such as eur3); the app's (default) database already has its own."
  default     = "eur3"
}

variable "artifact_bucket" {
  type        = string
  description = "Name of an existing GCS bucket (no gs://) holding the function source zip, the Flex Template specs and Dataflow's temp and staging files; the pipelines' service account is granted object access to it."
}

variable "enable_apis" {
  type        = bool
  description = "Enable the Google APIs Herald uses (Pub/Sub, BigQuery, Firestore, Cloud Functions, Cloud Run, Cloud Build, Scheduler, Dataflow, Secret Manager, Monitoring, Logging, Artifact Registry, FCM). Turn off when the project's APIs are managed elsewhere."
  default     = true
}

variable "labels" {
  type        = map(string)
  description = "Labels put on every resource that takes them."
  default     = { app = "herald" }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of the names terraform chooses itself (service accounts, functions, jobs, the Artifact Registry repository); the names the code reads come from generated/names.json."
  default     = "herald"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,14}$", var.name_prefix))
    error_message = "name_prefix must be 1-15 lowercase letters, digits or hyphens, starting with a letter (service account ids are at most 30 characters)."
  }
}

# --- Pub/Sub ---------------------------------------------------------------------------------

variable "max_delivery_attempts" {
  type        = number
  description = "Deliveries of a message on a pipeline's subscription before Pub/Sub moves it to the dead-letter topic."
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts 5 to 100 delivery attempts."
  }
}

variable "audit_max_delivery_attempts" {
  type        = number
  description = "Deliveries of a message on the audit subscription before it is dead-lettered. The reconciler pulls each request several times while it is not yet due (once per run until its grace has passed), so this is far above max_delivery_attempts."
  default     = 100

  validation {
    condition     = var.audit_max_delivery_attempts >= 5 && var.audit_max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts 5 to 100 delivery attempts."
  }
}

variable "message_retention_duration" {
  type        = string
  description = "How long a subscription keeps unacknowledged messages (at most 7 days), e.g. \"604800s\"."
  default     = "604800s"
}

variable "retry_minimum_backoff" {
  type        = string
  description = "Pub/Sub's shortest wait before redelivering a nacked or expired message, e.g. \"10s\"."
  default     = "10s"
}

variable "retry_maximum_backoff" {
  type        = string
  description = "Pub/Sub's longest wait before redelivering a nacked or expired message (at most 600s)."
  default     = "600s"
}

# --- Functions ---------------------------------------------------------------------------------

variable "deploy_functions" {
  type        = bool
  description = "Create the Cloud Functions and their Scheduler jobs. False for the first apply, before the source zip is uploaded and the secrets have values (see the README's deploy section)."
  default     = true
}

variable "function_source_object" {
  type        = string
  description = "Object name, in artifact_bucket, of the zip holding the function's source (ingest_function/ with main.py at the top, herald/ and requirements.txt), e.g. functions/herald-<git sha>.zip."
  default     = "functions/herald.zip"
}

variable "function_runtime" {
  type        = string
  description = "Cloud Functions runtime of the three functions."
  default     = "python312"
}

variable "ingest_max_instances" {
  type        = number
  description = "Most instances of the ingest function; each serves generated/names.json's max_instance_request_concurrency requests at once."
  default     = 100
}

variable "ingest_min_instances" {
  type        = number
  description = "Instances of the ingest function kept warm (no cold start on the first request)."
  default     = 1
}

variable "callback_base_url" {
  type        = string
  description = "Public base URL of the ingest function that providers call back (HERALD_CALLBACK_BASE_URL), e.g. a custom domain. Empty: the function's own https://REGION-PROJECT.cloudfunctions.net/NAME URL."
  default     = ""
}

variable "outbox_replay_schedule" {
  type        = string
  description = "Cron schedule of the outbox replay (Cloud Scheduler's unix-cron format; every minute is its finest)."
  default     = "* * * * *"
}

variable "reconcile_schedule" {
  type        = string
  description = "Cron schedule of the reconciler."
  default     = "*/5 * * * *"
}

variable "reconcile_grace_s" {
  type        = number
  description = "The reconciler's grace in seconds: it checks only requests published at least this long ago (herald.reconcile.DEFAULT_GRACE_S is 600)."
  default     = 600
}

variable "scheduler_time_zone" {
  type        = string
  description = "Time zone the Scheduler jobs' cron schedules are read in."
  default     = "Etc/UTC"
}

# --- Dataflow ----------------------------------------------------------------------------------

variable "deploy_pipelines" {
  type        = bool
  description = "Launch the streaming Dataflow jobs. False until the Flex Templates are built (see the README's deploy section)."
  default     = true
}

variable "delivery_template_gcs_path" {
  type        = string
  description = "gs:// path of the delivery pipeline's Flex Template spec, as written by `gcloud dataflow flex-template build` (pipelines/templates/delivery). Empty: gs://ARTIFACT_BUCKET/templates/delivery.json."
  default     = ""
}

variable "callbacks_template_gcs_path" {
  type        = string
  description = "gs:// path of the callbacks pipeline's Flex Template spec (pipelines/templates/callbacks). Empty: gs://ARTIFACT_BUCKET/templates/callbacks.json."
  default     = ""
}

variable "dataflow_max_workers" {
  type        = number
  description = "Most workers each streaming job autoscales to."
  default     = 10
}

variable "dataflow_machine_type" {
  type        = string
  description = "Worker machine type of the streaming jobs."
  default     = "n2-standard-2"
}

variable "dataflow_subnetwork" {
  type        = string
  description = "Subnetwork the workers run in (regions/REGION/subnetworks/NAME, or a full URL); it needs Private Google Access, since workers get no public IP. Empty: the default network's subnetwork of the region."
  default     = ""
}

variable "batch_shards" {
  type        = number
  description = "The pipelines' --batch_shards: keys per batching step (send, write), spreading batches over workers."
  default     = 16
}

# --- Monitoring --------------------------------------------------------------------------------

variable "notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids (projects/P/notificationChannels/N) the alert policies notify."
  default     = []
}

variable "oldest_unacked_threshold_s" {
  type        = number
  description = "Alert when the oldest unacknowledged request on the pipeline's subscription is older than this many seconds (Herald's delivery bound)."
  default     = 10
}

variable "twilio_from_number" {
  description = "The Twilio number (E.164) or Messaging Service SID Herald sends SMS from (TWILIO_FROM_NUMBER)."
  type        = string
}

variable "sendgrid_from_email" {
  description = "The verified SendGrid sender address Herald sends email from (SENDGRID_FROM_EMAIL)."
  type        = string
}

# Herald on Google Cloud. Every name the code reads comes from generated/names.json and every
# table schema from generated/bigquery/, both written by `herald schema --write`
# (herald/infrastructure.py); tests/terraform_test.py fails while they and this module disagree.

locals {
  herald = jsondecode(file("${path.module}/generated/names.json"))

  topics        = local.herald.pubsub.topics
  subscriptions = local.herald.pubsub.subscriptions
  function      = local.herald.function
  secrets       = local.herald.secrets

  apis = [
    "artifactregistry.googleapis.com",
    "bigquery.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "dataflow.googleapis.com",
    "firestore.googleapis.com",
    "fcm.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
  ]

  # The functions Cloud Scheduler calls -> the component whose service account runs them.
  scheduled_functions = { replay_outbox = "function", reconcile = "reconciler" }

  function_names = {
    for key in keys(local.function.entry_points) : key => "${var.name_prefix}-${replace(key, "_", "-")}"
  }
  callback_base_url = coalesce(var.callback_base_url,
  "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.function_names.ingest}")

  template_gcs_paths = {
    delivery  = coalesce(var.delivery_template_gcs_path, "gs://${var.artifact_bucket}/templates/delivery.json")
    callbacks = coalesce(var.callbacks_template_gcs_path, "gs://${var.artifact_bucket}/templates/callbacks.json")
  }

  members = module.service_accounts.members

  # The pipelines read their provider credentials from Secret Manager at launch (--secret_env)
  # and the rest of their settings from --settings_env: a Flex Template launch has no environment.
  pipeline_secret_env = jsonencode({
    for variable, secret in local.secrets : variable => module.secrets.secret_ids[variable]
    if contains(secret.readers, "pipelines")
  })
  pipeline_settings_env = jsonencode({
    HERALD_CALLBACK_BASE_URL = local.callback_base_url
    TWILIO_FROM_NUMBER       = var.twilio_from_number
    SENDGRID_FROM_EMAIL      = var.sendgrid_from_email
  })
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? toset(local.apis) : toset([])

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

module "service_accounts" {
  source = "./modules/service_accounts"

  project_id      = var.project_id
  name_prefix     = var.name_prefix
  state_database  = local.herald.firestore.state_database
  artifact_bucket = var.artifact_bucket

  depends_on = [google_project_service.apis]
}

module "pubsub" {
  source = "./modules/pubsub"

  project_id                  = var.project_id
  project_number              = data.google_project.this.number
  topics                      = local.topics
  subscriptions               = local.subscriptions
  dead_letter_topic_key       = "dead_letter"
  hold_subscription_key       = "dead_letter_hold"
  ack_deadline_seconds        = local.herald.pubsub.ack_deadline_seconds
  max_delivery_attempts       = var.max_delivery_attempts
  audit_subscription_key      = "requests_audit"
  audit_max_delivery_attempts = var.audit_max_delivery_attempts
  message_retention_duration  = var.message_retention_duration
  retry_minimum_backoff       = var.retry_minimum_backoff
  retry_maximum_backoff       = var.retry_maximum_backoff
  labels                      = var.labels

  publishers = {
    requests    = { for account in ["function", "reconciler"] : account => local.members[account] }
    callbacks   = { function = local.members.function }
    dead_letter = { for account in ["pipelines", "reconciler"] : account => local.members[account] }
  }
  subscribers = {
    requests_pipeline  = { pipelines = local.members.pipelines }
    callbacks_pipeline = { pipelines = local.members.pipelines }
    requests_audit     = { reconciler = local.members.reconciler }
  }

  depends_on = [google_project_service.apis]
}

module "bigquery" {
  source = "./modules/bigquery"

  project_id    = var.project_id
  dataset_id    = local.herald.bigquery.dataset
  location      = var.bigquery_location
  generated_dir = "${path.module}/generated"
  tables        = local.herald.bigquery.tables
  labels        = var.labels

  data_editors  = { pipelines = local.members.pipelines }
  data_viewers  = { reconciler = local.members.reconciler }
  table_editors = { dead_letters = { reconciler = local.members.reconciler } }

  depends_on = [google_project_service.apis]
}

module "firestore" {
  source = "./modules/firestore"

  project_id    = var.project_id
  database_name = local.herald.firestore.state_database
  location      = var.firestore_location
  ttl_fields    = local.herald.firestore.ttl
  indexes       = local.herald.firestore.indexes

  depends_on = [google_project_service.apis]
}

module "secrets" {
  source = "./modules/secrets"

  project_id = var.project_id
  labels     = var.labels
  secrets = {
    for variable, secret in local.secrets : variable => {
      secret_id = secret.secret_id
      accessors = { for reader in secret.readers : reader => local.members[reader] }
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository" "images" {
  # checkov:skip=CKV_GCP_84:Google-managed encryption; the images hold Herald's open-source code and no data.
  project       = var.project_id
  location      = var.region
  repository_id = var.name_prefix
  format        = "DOCKER"
  description   = "Herald's Flex Template launcher images (pipelines/templates/Dockerfile)."
  labels        = var.labels

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository_iam_member" "pipelines_reader" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = local.members.pipelines
}

module "functions" {
  source = "./modules/functions"
  count  = var.deploy_functions ? 1 : 0

  project_id    = var.project_id
  region        = var.region
  runtime       = var.function_runtime
  source_bucket = var.artifact_bucket
  source_object = var.function_source_object
  builder       = module.service_accounts.ids.builder
  labels        = var.labels

  functions = merge(
    {
      ingest = {
        name                  = local.function_names.ingest
        entry_point           = local.function.entry_points.ingest
        service_account_email = module.service_accounts.emails.function
        public                = true
        timeout_seconds       = 60
        min_instances         = var.ingest_min_instances
        max_instances         = var.ingest_max_instances
        concurrency           = local.function.max_instance_request_concurrency
        environment = merge(local.function.environment, {
          HERALD_PROJECT           = var.project_id
          HERALD_CALLBACK_BASE_URL = local.callback_base_url
        })
        secrets = {
          for variable, secret in local.secrets : variable => module.secrets.secret_ids[variable]
          if contains(secret.readers, "function")
        }
      }
    },
    {
      # Called by Cloud Scheduler alone, one run at a time, each within the job's attempt deadline.
      for key, account in local.scheduled_functions : key => {
        name                  = local.function_names[key]
        entry_point           = local.function.entry_points[key]
        service_account_email = module.service_accounts.emails[account]
        public                = false
        timeout_seconds       = 540
        min_instances         = 0
        max_instances         = 1
        concurrency           = 1
        environment           = merge(local.function.environment, { HERALD_PROJECT = var.project_id })
        secrets               = {}
      }
    },
  )
  invokers = { for key in keys(local.scheduled_functions) : key => { scheduler = local.members.scheduler } }

  depends_on = [google_project_service.apis, module.secrets]
}

module "scheduler" {
  source = "./modules/scheduler"
  count  = var.deploy_functions ? 1 : 0

  project_id            = var.project_id
  region                = var.region
  time_zone             = var.scheduler_time_zone
  service_account_email = module.service_accounts.emails.scheduler

  jobs = {
    outbox-replay = {
      description = "Republish the ingest outbox's pending entries (ingest_function/outbox.py)."
      schedule    = var.outbox_replay_schedule
      uri         = module.functions[0].service_uris.replay_outbox
      audience    = module.functions[0].service_uris.replay_outbox
    }
    reconcile = {
      description = "Check every accepted request finished; republish what did not (herald/reconcile.py)."
      schedule    = var.reconcile_schedule
      uri         = "${module.functions[0].service_uris.reconcile}?grace_s=${var.reconcile_grace_s}"
      audience    = module.functions[0].service_uris.reconcile
    }
  }
  name_prefix = var.name_prefix
}

module "dataflow" {
  source = "./modules/dataflow"
  count  = var.deploy_pipelines ? 1 : 0

  project_id            = var.project_id
  region                = var.region
  service_account_email = module.service_accounts.emails.pipelines
  temp_location         = "gs://${var.artifact_bucket}/dataflow/temp"
  staging_location      = "gs://${var.artifact_bucket}/dataflow/staging"
  subnetwork            = var.dataflow_subnetwork
  max_workers           = var.dataflow_max_workers
  machine_type          = var.dataflow_machine_type
  labels                = var.labels

  jobs = {
    delivery = {
      name                    = "${var.name_prefix}-delivery"
      container_spec_gcs_path = local.template_gcs_paths.delivery
      parameters = {
        herald_project        = var.project_id
        requests_subscription = local.subscriptions.requests_pipeline.name
        dataset               = local.herald.bigquery.dataset
        batch_shards          = tostring(var.batch_shards)
        secret_env            = local.pipeline_secret_env
        settings_env          = local.pipeline_settings_env
      }
    }
    callbacks = {
      name                    = "${var.name_prefix}-callbacks"
      container_spec_gcs_path = local.template_gcs_paths.callbacks
      parameters = {
        herald_project         = var.project_id
        callbacks_subscription = local.subscriptions.callbacks_pipeline.name
        dataset                = local.herald.bigquery.dataset
        batch_shards           = tostring(var.batch_shards)
        secret_env             = local.pipeline_secret_env
        settings_env           = local.pipeline_settings_env
      }
    }
  }

  depends_on = [module.pubsub, module.bigquery, module.firestore, google_artifact_registry_repository_iam_member.pipelines_reader]
}

module "monitoring" {
  source = "./modules/monitoring"

  project_id                 = var.project_id
  notification_channels      = var.notification_channels
  requests_subscription      = local.subscriptions.requests_pipeline.name
  hold_subscription          = local.subscriptions.dead_letter_hold.name
  oldest_unacked_threshold_s = var.oldest_unacked_threshold_s
  ingest_service             = local.function_names.ingest
  replay_outbox_service      = local.function_names.replay_outbox

  depends_on = [google_project_service.apis]
}

# One service account per component, each with only the roles its code calls for. Roles on a
# single resource (a topic, a subscription, the dataset, a secret) are granted by the module that
# owns the resource; the project-level roles here are those with no narrower resource.

locals {
  accounts = {
    function   = "Herald ingest function and outbox replay (ingest_function/)"
    reconciler = "Herald reconciler (herald/reconcile.py)"
    pipelines  = "Herald Dataflow workers and Flex Template launchers (pipelines/)"
    scheduler  = "Herald Cloud Scheduler jobs (invokes replay_outbox and reconcile)"
    builder    = "Herald Cloud Functions builds (Cloud Build)"
  }

  state_database_condition = "resource.name == \"projects/${var.project_id}/databases/${var.state_database}\""

  project_roles = {
    # Idempotency records and outbox entries, in the herald-state database only.
    function_state = { account = "function", role = "roles/datastore.user", condition = local.state_database_condition }
    # The reconciler's BigQuery queries run as jobs in the project.
    reconciler_jobs = { account = "reconciler", role = "roles/bigquery.jobUser", condition = null }
    # Dataflow workers: the worker role, logs and metrics.
    pipelines_worker  = { account = "pipelines", role = "roles/dataflow.worker", condition = null }
    pipelines_logs    = { account = "pipelines", role = "roles/logging.logWriter", condition = null }
    pipelines_metrics = { account = "pipelines", role = "roles/monitoring.metricWriter", condition = null }
    # Users and devices in (default) (read, and dead tokens disabled) and send claims in herald-state.
    pipelines_firestore = { account = "pipelines", role = "roles/datastore.user", condition = null }
    # FCM HTTP v1 sends (cloudmessaging.messages.create).
    pipelines_fcm = { account = "pipelines", role = "roles/firebasecloudmessaging.admin", condition = null }
    # Function builds: their logs, and the image Cloud Functions keeps in its gcf-artifacts repository
    # (https://cloud.google.com/functions/docs/securing/build-custom-sa).
    builder_logs   = { account = "builder", role = "roles/logging.logWriter", condition = null }
    builder_images = { account = "builder", role = "roles/artifactregistry.writer", condition = null }
  }
}

resource "google_service_account" "this" {
  for_each = local.accounts

  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = each.value
}

resource "google_project_iam_member" "this" {
  for_each = local.project_roles

  project = var.project_id
  role    = each.value.role
  member  = google_service_account.this[each.value.account].member

  dynamic "condition" {
    for_each = each.value.condition == null ? [] : [each.value.condition]
    content {
      title      = "herald-state database only"
      expression = condition.value
    }
  }
}

# The Dataflow jobs' temp and staging files and the Flex Template specs they launch from; the
# function source zip the builds read.
resource "google_storage_bucket_iam_member" "artifacts" {
  for_each = {
    pipelines_files = { account = "pipelines", role = "roles/storage.objectAdmin" }
    builder_source  = { account = "builder", role = "roles/storage.objectViewer" }
  }

  bucket = var.artifact_bucket
  role   = each.value.role
  member = google_service_account.this[each.value.account].member
}

# Herald's Cloud Functions (2nd gen) from one source zip: the ingest edge and the two functions
# Cloud Scheduler calls. Each function's underlying Cloud Run service takes the invocations.

locals {
  invoker_members = merge([
    for function, members in var.invokers : { for grantee, member in members : "${function}/${grantee}" => { function = function, member = member } }
  ]...)
}

resource "google_cloudfunctions2_function" "this" {
  # checkov:skip=CKV_GCP_124:The ingest function is Herald's public API (see the allUsers invoker below); the scheduled functions take only calls with an OIDC token of the scheduler's account, which alone holds roles/run.invoker on them.
  for_each = var.functions

  project     = var.project_id
  location    = var.region
  name        = each.value.name
  description = "Herald: ingest_function/main.py ${each.value.entry_point}"
  labels      = var.labels

  build_config {
    runtime         = var.runtime
    entry_point     = each.value.entry_point
    service_account = var.builder

    source {
      storage_source {
        bucket = var.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email            = each.value.service_account_email
    timeout_seconds                  = each.value.timeout_seconds
    min_instance_count               = each.value.min_instances
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = each.value.concurrency
    # More than one request at a time per instance needs at least one whole CPU.
    available_cpu                  = "1"
    available_memory               = "512Mi"
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true
    environment_variables          = each.value.environment

    dynamic "secret_environment_variables" {
      for_each = each.value.secrets
      content {
        key        = secret_environment_variables.key
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }
}

# The ingest function is Herald's public HTTP API: senders authenticate with API keys
# (Authorization: Bearer), and providers' delivery callbacks are verified by their signatures;
# neither can present a Google identity.
resource "google_cloud_run_v2_service_iam_member" "public" {
  for_each = { for key, function in var.functions : key => function if function.public }

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this[each.key].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = local.invoker_members

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this[each.value.function].name
  role     = "roles/run.invoker"
  member   = each.value.member
}

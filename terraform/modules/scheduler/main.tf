# The periodic jobs: Cloud Scheduler calls each function with an OIDC token of its own service
# account, which alone may invoke them.

resource "google_cloud_scheduler_job" "this" {
  for_each = var.jobs

  project          = var.project_id
  region           = var.region
  name             = "${var.name_prefix}-${each.key}"
  description      = each.value.description
  schedule         = each.value.schedule
  time_zone        = var.time_zone
  attempt_deadline = "540s"

  retry_config {
    # The next run comes within minutes; a failed run is not retried on top of it.
    retry_count = 0
  }

  http_target {
    http_method = "POST"
    uri         = each.value.uri

    oidc_token {
      service_account_email = var.service_account_email
      audience              = each.value.audience
    }
  }
}

# The streaming pipelines, launched from their Flex Templates (pipelines/templates/). Parameters
# are the pipelines' own options (pipelines/options.py HeraldOptions); standard Dataflow options
# are the resource's arguments.

resource "google_dataflow_flex_template_job" "this" {
  provider = google-beta
  for_each = var.jobs

  project                      = var.project_id
  region                       = var.region
  name                         = each.value.name
  container_spec_gcs_path      = each.value.container_spec_gcs_path
  parameters                   = each.value.parameters
  service_account_email        = var.service_account_email
  temp_location                = var.temp_location
  staging_location             = var.staging_location
  subnetwork                   = var.subnetwork == "" ? null : var.subnetwork
  ip_configuration             = "WORKER_IP_PRIVATE"
  enable_streaming_engine      = true
  max_workers                  = var.max_workers
  machine_type                 = var.machine_type
  labels                       = var.labels
  on_delete                    = "drain"
  skip_wait_on_job_termination = false
}

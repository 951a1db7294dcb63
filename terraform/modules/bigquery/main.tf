# The analytics dataset and its tables. Schemas are the files `herald schema --write` generates
# from herald/events.py and herald/dead_letters.py; partitioning and clustering come with them.

locals {
  table_editor_members = merge([
    for table, members in var.table_editors : { for grantee, member in members : "${table}/${grantee}" => { table = table, member = member } }
  ]...)
}

resource "google_bigquery_dataset" "this" {
  # checkov:skip=CKV_GCP_81:Encrypted at rest with Google-managed keys; customer-managed keys need a KMS key ring and service agent grants this module does not create.
  project                    = var.project_id
  dataset_id                 = var.dataset_id
  location                   = var.location
  description                = "Herald's analytics: every event of every request and delivery, and what the pipelines parked."
  labels                     = var.labels
  delete_contents_on_destroy = false
}

resource "google_bigquery_table" "this" {
  # checkov:skip=CKV_GCP_80:Encrypted at rest with Google-managed keys (see the dataset).
  for_each = var.tables

  project             = var.project_id
  dataset_id          = google_bigquery_dataset.this.dataset_id
  table_id            = each.key
  description         = each.value.description
  labels              = var.labels
  schema              = file("${var.generated_dir}/${each.value.schema_file}")
  clustering          = length(each.value.clustering) > 0 ? each.value.clustering : null
  deletion_protection = true

  time_partitioning {
    type  = each.value.partition_type
    field = each.value.partition_field
    # Queries such as the reconciler's look requests up by trace id across days.
    require_partition_filter = false
  }
}

resource "google_bigquery_dataset_iam_member" "this" {
  for_each = merge(
    { for grantee, member in var.data_editors : "editor/${grantee}" => { role = "roles/bigquery.dataEditor", member = member } },
    { for grantee, member in var.data_viewers : "viewer/${grantee}" => { role = "roles/bigquery.dataViewer", member = member } },
  )

  project    = var.project_id
  dataset_id = google_bigquery_dataset.this.dataset_id
  role       = each.value.role
  member     = each.value.member
}

resource "google_bigquery_table_iam_member" "editors" {
  for_each = local.table_editor_members

  project    = var.project_id
  dataset_id = google_bigquery_dataset.this.dataset_id
  table_id   = google_bigquery_table.this[each.value.table].table_id
  role       = "roles/bigquery.dataEditor"
  member     = each.value.member
}

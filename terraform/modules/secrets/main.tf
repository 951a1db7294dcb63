# One Secret Manager secret per credential Herald reads from its environment; values are added
# outside terraform (`gcloud secrets versions add`), so they never reach the state file.

locals {
  accessor_members = merge([
    for variable, secret in var.secrets : { for grantee, member in secret.accessors : "${variable}/${grantee}" => { variable = variable, member = member } }
  ]...)
}

resource "google_secret_manager_secret" "this" {
  for_each = var.secrets

  project   = var.project_id
  secret_id = each.value.secret_id
  labels    = var.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_iam_member" "accessors" {
  for_each = local.accessor_members

  project   = var.project_id
  secret_id = google_secret_manager_secret.this[each.value.variable].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = each.value.member
}

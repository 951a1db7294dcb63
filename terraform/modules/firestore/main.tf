# Herald's own Firestore database (idempotency records, outbox entries, send claims), apart from
# the app's (default) database, which holds users and devices and is not managed here.

resource "google_firestore_database" "state" {
  project                           = var.project_id
  name                              = var.database_name
  location_id                       = var.location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"
}

# Documents are deleted once their TTL field's time has passed (within about a day:
# https://cloud.google.com/firestore/docs/ttl). The field is exempt from single-field indexing,
# which a monotonically increasing timestamp written on every request would only slow down.
# It is written out (not each.value) so checkov's CKV2_HERALD_2 sees it; var.ttl_fields' validation
# fails the plan if the code ever expires a collection by another field.
resource "google_firestore_field" "ttl" {
  for_each = var.ttl_fields

  project    = var.project_id
  database   = google_firestore_database.state.name
  collection = each.key
  field      = "expires_at"

  ttl_config {}
  index_config {}
}

resource "google_firestore_index" "this" {
  for_each = { for index in var.indexes : "${index.collection}/${join(",", [for field in index.fields : field.field_path])}" => index }

  project     = var.project_id
  database    = google_firestore_database.state.name
  collection  = each.value.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.field_path
      order      = fields.value.order
    }
  }
}

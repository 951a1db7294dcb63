# Herald's topics and subscriptions. Every subscription but the dead-letter topic's own `-hold`
# one sends what it cannot deliver after max_delivery_attempts to the dead-letter topic, where the
# hold subscription keeps it for `herald dlq replay` (herald/dlq.py).

locals {
  pubsub_agent = "serviceAccount:service-${var.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  dead_lettered = { for key, subscription in var.subscriptions : key => subscription if key != var.hold_subscription_key }

  # Keyed by names known at plan time: the members' emails are not, until their accounts exist.
  publisher_members = merge([
    for topic, members in var.publishers : { for grantee, member in members : "${topic}/${grantee}" => { topic = topic, member = member } }
  ]...)
  subscriber_members = merge([
    for subscription, members in var.subscribers : { for grantee, member in members : "${subscription}/${grantee}" => { subscription = subscription, member = member } }
  ]...)
}

resource "google_pubsub_topic" "this" {
  # checkov:skip=CKV_GCP_83:Google-managed encryption keys; Herald's messages hold no secrets (contact data is hashed in analytics, and a CMEK needs a KMS key this module does not own).
  for_each = var.topics

  project                    = var.project_id
  name                       = each.value
  labels                     = var.labels
  message_retention_duration = var.message_retention_duration
}

resource "google_pubsub_subscription" "this" {
  for_each = var.subscriptions

  project                    = var.project_id
  name                       = each.value.name
  topic                      = google_pubsub_topic.this[each.value.topic].id
  labels                     = var.labels
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.message_retention_duration
  retain_acked_messages      = false

  expiration_policy {
    ttl = "" # never expires, however long the pipeline is stopped
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  dynamic "dead_letter_policy" {
    for_each = contains(keys(local.dead_lettered), each.key) ? [each.key] : []
    content {
      dead_letter_topic     = google_pubsub_topic.this[var.dead_letter_topic_key].id
      max_delivery_attempts = lookup(var.max_delivery_attempts_by_subscription, each.key, var.max_delivery_attempts)
    }
  }
}

# Dead-lettering needs the Pub/Sub service agent to publish to the dead-letter topic and to
# acknowledge the message on its source subscription
# (https://cloud.google.com/pubsub/docs/handling-failures#grant_forwarding_permissions).
resource "google_pubsub_topic_iam_member" "dead_letter_agent" {
  project = var.project_id
  topic   = google_pubsub_topic.this[var.dead_letter_topic_key].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_agent" {
  for_each = local.dead_lettered

  project      = var.project_id
  subscription = google_pubsub_subscription.this[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = local.publisher_members

  project = var.project_id
  topic   = google_pubsub_topic.this[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = each.value.member
}

resource "google_pubsub_subscription_iam_member" "subscribers" {
  for_each = local.subscriber_members

  project      = var.project_id
  subscription = google_pubsub_subscription.this[each.value.subscription].name
  role         = "roles/pubsub.subscriber"
  member       = each.value.member
}

# Dataflow's Pub/Sub source also reads the subscription's configuration (pubsub.subscriptions.get).
resource "google_pubsub_subscription_iam_member" "viewers" {
  for_each = local.subscriber_members

  project      = var.project_id
  subscription = google_pubsub_subscription.this[each.value.subscription].name
  role         = "roles/pubsub.viewer"
  member       = each.value.member
}

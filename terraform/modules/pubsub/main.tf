# Herald's topics and subscriptions. Every subscription but the dead-letter topic's own `-hold`
# one sends what it cannot deliver after max_delivery_attempts to the dead-letter topic, where the
# hold subscription keeps it for `herald dlq replay` (herald/dlq.py).

locals {
  pubsub_agent = "serviceAccount:service-${var.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  dead_lettered = { for key, subscription in var.subscriptions : key => subscription if key != var.hold_subscription_key }

  subscription_names = merge(
    { for key, subscription in google_pubsub_subscription.this : key => subscription.name },
    { (var.hold_subscription_key) = google_pubsub_subscription.hold.name },
  )

  # Keyed by names known at plan time: the members' emails are not, until their accounts exist.
  publisher_members = merge([
    for topic, members in var.publishers : { for grantee, member in members : "${topic}/${grantee}" => { topic = topic, member = member } }
  ]...)
  subscriber_members = merge([
    for subscription, members in var.subscribers : { for grantee, member in members : "${subscription}/${grantee}" => { subscription = subscription, member = member } }
  ]...)
}

resource "google_pubsub_topic" "this" {
  # checkov:skip=CKV_GCP_83:Encrypted at rest with Google-managed keys; customer-managed keys need a KMS key ring and service agent grants this module does not create.
  for_each = var.topics

  project                    = var.project_id
  name                       = each.value
  labels                     = var.labels
  message_retention_duration = var.message_retention_duration
}

resource "google_pubsub_subscription" "this" {
  for_each = local.dead_lettered

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

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.this[var.dead_letter_topic_key].id
    max_delivery_attempts = each.key == var.audit_subscription_key ? var.audit_max_delivery_attempts : var.max_delivery_attempts
  }
}

# The dead-letter topic's own subscription: it keeps dead letters until `herald dlq replay` takes
# them, and `herald dlq replay` hands back (nacks) the ones its filter leaves out, so it must never
# dead-letter them in turn.
resource "google_pubsub_subscription" "hold" {
  # checkov:skip=CKV2_HERALD_1:The dead-letter topic's own subscription; its dead letters would go back to its own topic.
  project                    = var.project_id
  name                       = var.subscriptions[var.hold_subscription_key].name
  topic                      = google_pubsub_topic.this[var.dead_letter_topic_key].id
  labels                     = var.labels
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = var.message_retention_duration
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
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

# Dataflow's Pub/Sub source also reads the subscription's configuration (pubsub.subscriptions.get).
resource "google_pubsub_subscription_iam_member" "subscribers" {
  for_each = {
    for pair in setproduct(keys(local.subscriber_members), ["roles/pubsub.subscriber", "roles/pubsub.viewer"]) :
    "${pair[0]}/${pair[1]}" => merge(local.subscriber_members[pair[0]], { role = pair[1] })
  }

  project      = var.project_id
  subscription = local.subscription_names[each.value.subscription]
  role         = each.value.role
  member       = each.value.member
}

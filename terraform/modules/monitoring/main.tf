# What an operator must know: requests waiting longer than the delivery bound, anything parked,
# and requests taken by the outbox (Pub/Sub refused them) or an outbox replay Pub/Sub refused.

locals {
  # The outbox is fed by log lines (the code keeps no count of pending entries): the ingest
  # function's warning when a request goes to the outbox, and replay_outbox answering 503 when
  # Pub/Sub still refuses its entries. tests/terraform_test.py checks the warning's text is
  # still in ingest_function/main.py.
  outbox_write_filter   = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.ingest_service}\" AND textPayload:\"${var.outbox_log_marker}\""
  replay_refused_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.replay_outbox_service}\" AND httpRequest.status=503"
}

resource "google_monitoring_alert_policy" "requests_waiting" {
  project               = var.project_id
  display_name          = "Herald: requests waiting longer than ${var.oldest_unacked_threshold_s} s"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "Oldest unacked message on ${var.requests_subscription}"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${var.requests_subscription}\" AND metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.oldest_unacked_threshold_s
      duration        = "60s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "The delivery pipeline is behind or stopped: check the Dataflow job's health and backlog. Requests are not lost; they wait on the subscription."
  }
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "Herald: dead letters parked"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "Undelivered messages on ${var.hold_subscription}"
    condition_threshold {
      filter          = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${var.hold_subscription}\" AND metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Something was parked: see the BigQuery dead_letters table for why, fix the cause, then `herald dlq replay`."
  }
}

resource "google_logging_metric" "outbox_writes" {
  project     = var.project_id
  name        = "herald/outbox_writes"
  description = "Requests the ingest function stored in the Firestore outbox because Pub/Sub did not take them."
  filter      = local.outbox_write_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

resource "google_logging_metric" "outbox_replay_refused" {
  project     = var.project_id
  name        = "herald/outbox_replay_refused"
  description = "Outbox replay runs that stopped because Pub/Sub still refused (replay_outbox answered 503)."
  filter      = local.replay_refused_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
  }
}

resource "google_monitoring_alert_policy" "outbox_pending" {
  project               = var.project_id
  display_name          = "Herald: outbox entries pending"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "Requests written to the outbox"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.outbox_writes.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  conditions {
    display_name = "Outbox replay refused by Pub/Sub"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.outbox_replay_refused.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Pub/Sub refused requests, which the edge kept in the Firestore outbox (herald-state, collection outbox, state pending). The outbox-replay Scheduler job republishes them every minute once Pub/Sub answers; the alert closes when no write or refused replay has been seen for 5 minutes."
  }
}

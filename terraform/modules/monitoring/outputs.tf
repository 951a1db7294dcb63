output "alert_policy_ids" {
  description = "Alert policy key -> id."
  value = {
    requests_waiting = google_monitoring_alert_policy.requests_waiting.id
    dead_letters     = google_monitoring_alert_policy.dead_letters.id
    outbox_pending   = google_monitoring_alert_policy.outbox_pending.id
  }
}

output "topic_ids" {
  description = "Topic key -> topic id (projects/P/topics/NAME)."
  value       = { for key, topic in google_pubsub_topic.this : key => topic.id }
}

output "subscription_ids" {
  description = "Subscription key -> subscription id (projects/P/subscriptions/NAME)."
  value = merge(
    { for key, subscription in google_pubsub_subscription.this : key => subscription.id },
    { (var.hold_subscription_key) = google_pubsub_subscription.hold.id },
  )
}

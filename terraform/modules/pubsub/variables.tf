variable "project_id" {
  type        = string
  description = "Project of the topics and subscriptions."
}

variable "project_number" {
  type        = string
  description = "Number of project_id: names its Pub/Sub service agent, which dead-lettering needs."
}

variable "topics" {
  type        = map(string)
  description = "Topic key -> topic name (generated/names.json pubsub.topics)."
}

variable "subscriptions" {
  type = map(object({
    name  = string
    topic = string
  }))
  description = "Subscription key -> {name, topic key} (generated/names.json pubsub.subscriptions)."
}

variable "dead_letter_topic_key" {
  type        = string
  description = "Key, in topics, of the dead-letter topic every other subscription dead-letters to."
}

variable "hold_subscription_key" {
  type        = string
  description = "Key, in subscriptions, of the dead-letter topic's own subscription: it keeps dead letters for replay and has no dead-letter policy (its dead letters would come back to its own topic)."
}

variable "ack_deadline_seconds" {
  type        = number
  description = "Ack deadline of every subscription, in seconds (the local stack's, herald/local/provision.py)."
}

variable "max_delivery_attempts" {
  type        = number
  description = "Deliveries before a message is dead-lettered (5 to 100)."

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts 5 to 100 delivery attempts."
  }
}

variable "audit_subscription_key" {
  type        = string
  description = "Key, in subscriptions, of the subscription whose messages are pulled repeatedly on purpose (the reconciler's audit subscription): it dead-letters after audit_max_delivery_attempts instead."
}

variable "audit_max_delivery_attempts" {
  type        = number
  description = "Deliveries before a message on the audit subscription is dead-lettered (5 to 100)."

  validation {
    condition     = var.audit_max_delivery_attempts >= 5 && var.audit_max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts 5 to 100 delivery attempts."
  }
}

variable "message_retention_duration" {
  type        = string
  description = "How long topics and subscriptions keep messages, e.g. \"604800s\"."
}

variable "retry_minimum_backoff" {
  type        = string
  description = "Shortest redelivery backoff, e.g. \"10s\"."
}

variable "retry_maximum_backoff" {
  type        = string
  description = "Longest redelivery backoff, at most \"600s\"."
}

variable "labels" {
  type        = map(string)
  description = "Labels of the topics and subscriptions."
  default     = {}
}

variable "publishers" {
  type        = map(map(string))
  description = "Topic key -> {grantee name -> IAM member} granted roles/pubsub.publisher on it."
  default     = {}
}

variable "subscribers" {
  type        = map(map(string))
  description = "Subscription key -> {grantee name -> IAM member} granted roles/pubsub.subscriber and roles/pubsub.viewer on it."
  default     = {}
}

variable "project_id" {
  type        = string
  description = "Project of the alert policies and log-based metrics."
}

variable "notification_channels" {
  type        = list(string)
  description = "Notification channel ids the policies notify."
  default     = []
}

variable "requests_subscription" {
  type        = string
  description = "The delivery pipeline's subscription on the requests topic."
}

variable "hold_subscription" {
  type        = string
  description = "The dead-letter topic's subscription that keeps dead letters."
}

variable "oldest_unacked_threshold_s" {
  type        = number
  description = "Alert threshold on the requests subscription's oldest unacked message age, in seconds."
}

variable "ingest_service" {
  type        = string
  description = "Name of the ingest function (its Cloud Run service), whose logs feed the outbox-writes metric."
}

variable "replay_outbox_service" {
  type        = string
  description = "Name of the replay_outbox function (its Cloud Run service), whose 503 answers feed the replay-refused metric."
}

variable "outbox_log_marker" {
  type        = string
  description = "Text of the ingest function's log line when it writes a request to the outbox (ingest_function/main.py)."
  default     = "writing it to the outbox"
}

variable "project_id" {
  type        = string
  description = "Project of the functions."
}

variable "region" {
  type        = string
  description = "Region of the functions."
}

variable "runtime" {
  type        = string
  description = "Cloud Functions runtime, e.g. python312."
}

variable "source_bucket" {
  type        = string
  description = "Bucket of the source zip."
}

variable "source_object" {
  type        = string
  description = "Object name of the source zip in source_bucket."
}

variable "builder" {
  type        = string
  description = "Service account the builds run as (projects/P/serviceAccounts/EMAIL), rather than the project's default compute account."
}

variable "labels" {
  type        = map(string)
  description = "Labels of the functions."
  default     = {}
}

variable "functions" {
  type = map(object({
    name                  = string
    entry_point           = string
    service_account_email = string
    public                = bool
    timeout_seconds       = number
    min_instances         = number
    max_instances         = number
    concurrency           = number
    environment           = map(string)
    secrets               = map(string)
  }))
  description = "Function key -> its name, entry point in ingest_function/main.py, runtime service account, whether anyone may invoke it (public), timeout, instance bounds, requests per instance, environment variables and secret environment variables (variable -> Secret Manager secret id, latest version)."
}

variable "invokers" {
  type        = map(map(string))
  description = "Function key -> {grantee name -> IAM member} granted roles/run.invoker on it."
  default     = {}
}

variable "project_id" {
  type        = string
  description = "Project of the jobs."
}

variable "region" {
  type        = string
  description = "Region of the jobs."
}

variable "name_prefix" {
  type        = string
  description = "Jobs are named <name_prefix>-<job key>."
}

variable "time_zone" {
  type        = string
  description = "Time zone the schedules are read in."
}

variable "service_account_email" {
  type        = string
  description = "Service account whose OIDC token the jobs present (it holds roles/run.invoker on the functions)."
}

variable "jobs" {
  type = map(object({
    description = string
    schedule    = string
    uri         = string
    audience    = string
  }))
  description = "Job key -> description, unix-cron schedule, URL it POSTs to and the OIDC token's audience (the function's URL without query)."
}

variable "project_id" {
  type        = string
  description = "Project the jobs run in."
}

variable "region" {
  type        = string
  description = "Dataflow region."
}

variable "service_account_email" {
  type        = string
  description = "Worker (and launcher) service account."
}

variable "temp_location" {
  type        = string
  description = "gs:// path for Dataflow's temporary files."
}

variable "staging_location" {
  type        = string
  description = "gs:// path for Dataflow's staged files."
}

variable "subnetwork" {
  type        = string
  description = "Workers' subnetwork (regions/REGION/subnetworks/NAME); empty for the default network's."
  default     = ""
}

variable "max_workers" {
  type        = number
  description = "Most workers per job."
}

variable "machine_type" {
  type        = string
  description = "Worker machine type."
}

variable "labels" {
  type        = map(string)
  description = "Labels of the jobs."
  default     = {}
}

variable "jobs" {
  type = map(object({
    name                    = string
    container_spec_gcs_path = string
    parameters              = map(string)
  }))
  description = "Job key -> job name, gs:// path of its Flex Template spec, and its pipeline options (option name without dashes -> value)."
}

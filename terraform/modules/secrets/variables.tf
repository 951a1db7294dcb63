variable "project_id" {
  type        = string
  description = "Project of the secrets."
}

variable "secrets" {
  type = map(object({
    secret_id = string
    accessors = map(string)
  }))
  description = "Environment variable it fills -> {secret id, grantee name -> IAM member granted roles/secretmanager.secretAccessor} (generated/names.json secrets)."
}

variable "labels" {
  type        = map(string)
  description = "Labels of the secrets."
  default     = {}
}

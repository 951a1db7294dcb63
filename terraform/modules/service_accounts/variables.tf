variable "project_id" {
  type        = string
  description = "Project the service accounts and their project-level roles are in."
}

variable "name_prefix" {
  type        = string
  description = "Service account ids are <name_prefix>-function, -reconciler, -pipelines, -scheduler and -builder."
}

variable "state_database" {
  type        = string
  description = "Herald's Firestore state database: the function's Firestore role is limited to it by an IAM condition."
}

variable "artifact_bucket" {
  type        = string
  description = "Bucket of the Dataflow temp/staging files, Flex Template specs and function source: the pipelines' account gets object access to it, the builder's read access."
}

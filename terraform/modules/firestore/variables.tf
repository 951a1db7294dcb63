variable "project_id" {
  type        = string
  description = "Project of the database."
}

variable "database_name" {
  type        = string
  description = "Herald's state database (HERALD_STATE_DATABASE; generated/names.json firestore.state_database)."
}

variable "location" {
  type        = string
  description = "Database location, a region (europe-west1) or multi-region (eur3, nam5)."
}

variable "ttl_fields" {
  type        = map(string)
  description = "Collection -> the timestamp field its TTL policy deletes documents by (generated/names.json firestore.ttl)."

  validation {
    condition     = alltrue([for field in values(var.ttl_fields) : field == "expires_at"])
    error_message = "Every TTL field must be expires_at, the field this module sets the TTL policy on."
  }
}

variable "indexes" {
  type = list(object({
    collection = string
    fields = list(object({
      field_path = string
      order      = string
    }))
  }))
  description = "Composite indexes the state database's queries need (generated/names.json firestore.indexes)."
  default     = []
}

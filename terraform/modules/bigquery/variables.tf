variable "project_id" {
  type        = string
  description = "Project of the dataset."
}

variable "dataset_id" {
  type        = string
  description = "Dataset id (HERALD_DATASET; generated/names.json bigquery.dataset)."
}

variable "location" {
  type        = string
  description = "Dataset location (a region or the EU / US multi-region)."
}

variable "generated_dir" {
  type        = string
  description = "Directory the tables' schema_file paths are relative to (the root module's generated/)."
}

variable "tables" {
  type = map(object({
    schema_file     = string
    partition_field = string
    partition_type  = string
    clustering      = list(string)
    description     = string
  }))
  description = "Table id -> schema file, time-partitioning column and type, clustering columns, description (generated/names.json bigquery.tables)."
}

variable "labels" {
  type        = map(string)
  description = "Labels of the dataset and tables."
  default     = {}
}

variable "data_editors" {
  type        = map(string)
  description = "Grantee name -> IAM member granted roles/bigquery.dataEditor on the dataset (streaming inserts)."
  default     = {}
}

variable "data_viewers" {
  type        = map(string)
  description = "Grantee name -> IAM member granted roles/bigquery.dataViewer on the dataset."
  default     = {}
}

variable "table_editors" {
  type        = map(map(string))
  description = "Table id -> {grantee name -> IAM member} granted roles/bigquery.dataEditor on that table only."
  default     = {}
}

output "dataset_id" {
  description = "The dataset's id."
  value       = google_bigquery_dataset.this.dataset_id
}

output "table_ids" {
  description = "Table id -> full table id (projects/P/datasets/D/tables/T)."
  value       = { for key, table in google_bigquery_table.this : key => table.id }
}

output "job_ids" {
  description = "Job key -> Dataflow job id."
  value       = { for key, job in google_dataflow_flex_template_job.this : key => job.job_id }
}

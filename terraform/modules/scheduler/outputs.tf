output "job_names" {
  description = "Job key -> job name."
  value       = { for key, job in google_cloud_scheduler_job.this : key => job.name }
}

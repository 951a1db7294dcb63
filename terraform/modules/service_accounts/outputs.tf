output "emails" {
  description = "Component (function, reconciler, pipelines, scheduler) -> service account email."
  value       = { for key, account in google_service_account.this : key => account.email }
}

output "members" {
  description = "Component -> IAM member string (serviceAccount:EMAIL)."
  value       = { for key, account in google_service_account.this : key => account.member }
}

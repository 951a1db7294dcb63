output "emails" {
  description = "Component (function, reconciler, pipelines, scheduler, builder) -> service account email."
  value       = { for key, account in google_service_account.this : key => account.email }
}

output "ids" {
  description = "Component -> service account id (projects/P/serviceAccounts/EMAIL), as build_config.service_account takes it."
  value       = { for key, account in google_service_account.this : key => account.id }
}

output "members" {
  description = "Component -> IAM member string (serviceAccount:EMAIL)."
  value       = { for key, account in google_service_account.this : key => account.member }
}

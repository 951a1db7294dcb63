output "secret_ids" {
  description = "Environment variable -> secret id."
  value       = { for variable, secret in google_secret_manager_secret.this : variable => secret.secret_id }
}

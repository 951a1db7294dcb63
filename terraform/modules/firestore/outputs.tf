output "database" {
  description = "The state database's name."
  value       = google_firestore_database.state.name
}

output "uris" {
  description = "Function key -> its HTTPS URL."
  value       = { for key, function in google_cloudfunctions2_function.this : key => function.url }
}

output "names" {
  description = "Function key -> function (and Cloud Run service) name."
  value       = { for key, function in google_cloudfunctions2_function.this : key => function.name }
}

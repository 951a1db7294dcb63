output "urls" {
  description = "Function key -> its https://REGION-PROJECT.cloudfunctions.net/NAME URL."
  value       = { for key, function in google_cloudfunctions2_function.this : key => function.url }
}

output "service_uris" {
  description = "Function key -> the https://...run.app URI of its Cloud Run service (what an OIDC token's audience names)."
  value       = { for key, function in google_cloudfunctions2_function.this : key => function.service_config[0].uri }
}

output "names" {
  description = "Function key -> function (and Cloud Run service) name."
  value       = { for key, function in google_cloudfunctions2_function.this : key => function.name }
}

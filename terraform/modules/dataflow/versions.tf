terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    # google_dataflow_flex_template_job exists only in google-beta.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.14.0, < 7.0.0"
    }
  }
}

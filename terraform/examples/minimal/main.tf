# The smallest deployment: the root module with its defaults, in one project and region.

terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  # Exact versions here; the module itself accepts the 6.x line.
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "6.14.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "6.14.0"
    }
  }

  backend "gcs" {
    # bucket is given at init: terraform init -backend-config="bucket=PROJECT-tfstate"
    prefix = "herald"
  }
}

variable "project_id" {
  type        = string
  description = "The GCP project to deploy Herald to."
}

variable "region" {
  type        = string
  description = "Region of the functions, Dataflow jobs and Scheduler jobs."
  default     = "europe-west1"
}

variable "artifact_bucket" {
  type        = string
  description = "Existing bucket for the function zip, Flex Template specs and Dataflow files."
}

variable "deploy" {
  type        = bool
  description = "False for the first apply (before the secrets have values, the zip is uploaded and the templates are built); true after."
  default     = true
}

variable "function_source_object" {
  type        = string
  description = "Object name of the function's source zip in artifact_bucket (a new name per build redeploys)."
  default     = "functions/herald.zip"
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

variable "twilio_from_number" {
  description = "The Twilio number (E.164) Herald sends SMS from."
  type        = string
}

variable "sendgrid_from_email" {
  description = "The verified SendGrid sender address Herald sends email from."
  type        = string
}

module "herald" {
  source = "../.."

  project_id       = var.project_id
  region           = var.region
  artifact_bucket  = var.artifact_bucket
  deploy_functions = var.deploy
  deploy_pipelines = var.deploy

  function_source_object = var.function_source_object
  twilio_from_number     = var.twilio_from_number
  sendgrid_from_email    = var.sendgrid_from_email
}

output "ingest_url" {
  description = "POST /v1/notifications here."
  value       = module.herald.ingest_url
}

output "herald" {
  description = "Everything else the module outputs."
  value       = module.herald
}

terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}

provider "aws" {
  region = var.aws_region

  # Refuse to touch any other account than the one named in terraform.tfvars.
  allowed_account_ids = [var.account_id]

  default_tags {
    tags = {
      Project = var.name
    }
  }
}

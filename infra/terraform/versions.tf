terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # tested with 5.100 (tests/infra/check_tools.sh); 6.x is a new major with breaking changes.
      # .terraform.lock.hcl pins the exact version; `terraform init -upgrade` moves it within this range.
      version = ">= 5.100, < 6.0"
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

variable "aws_region" {
  description = "AWS region for every resource (Lambda sets AWS_REGION for the function itself)."
  type        = string
}

variable "account_id" {
  description = "12-digit AWS account id; the provider refuses to run against any other account."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be the 12-digit AWS account id."
  }
}

variable "image_uri" {
  description = "Container image for the Lambda function, e.g. <account>.dkr.ecr.<region>.amazonaws.com/product-photo-api:latest. Empty = <ecr_repository_url>:latest."
  type        = string
  default     = ""
}

variable "kie_api_key" {
  description = "KIE API key (https://kie.ai). Stored in the Lambda environment."
  type        = string
  sensitive   = true
}

variable "kie_base_url" {
  description = "KIE API base URL."
  type        = string
  default     = "https://api.kie.ai"
}

variable "kie_model" {
  description = "KIE model used by POST /generate."
  type        = string
  default     = "flux-2/pro-image-to-image"
}

variable "cors_origins" {
  description = "Browser origins allowed to call the API and to PUT to presigned S3 URLs, e.g. [\"https://app.example.com\"]."
  type        = list(string)
  default     = ["*"]
}

variable "api_token" {
  description = "Optional bearer token the server requires on mutating routes (API_TOKEN). Empty = no token."
  type        = string
  default     = ""
  sensitive   = true
}

variable "callback_secret" {
  description = "Secret token in KIE's callBackUrl (CALLBACK_SECRET). Set it: when empty every Lambda instance invents its own and callbacks landing on another instance are rejected."
  type        = string
  default     = ""
  sensitive   = true
}

variable "name" {
  description = "Base name for the function, ECR repository, IAM role and API."
  type        = string
  default     = "product-photo-api"
}

variable "ecr_repository_name" {
  description = "ECR repository name."
  type        = string
  default     = "product-photo-api"
}

variable "bucket_name" {
  description = "S3 bucket for uploads and results. Empty = <name>-uploads-<account_id>-<aws_region> (globally unique)."
  type        = string
  default     = ""
}

variable "architecture" {
  description = "Lambda architecture; must match the platform the image was built for (x86_64 = linux/amd64, arm64 = linux/arm64)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "memory_size" {
  description = "Lambda memory in MB."
  type        = number
  default     = 1024
}

variable "timeout" {
  description = "Lambda timeout in seconds (API Gateway HTTP APIs still cut requests at 30 s)."
  type        = number
  default     = 60
}

variable "s3_presign_ttl" {
  description = "Lifetime in seconds of presigned S3 URLs minted by the server (bounded by the Lambda role session)."
  type        = number
  default     = 3600
}

variable "upload_expiration_days" {
  description = "Days after which S3 deletes uploads (the uploads/ prefix); kept results under results/ stay."
  type        = number
  default     = 1

  validation {
    condition     = var.upload_expiration_days >= 1
    error_message = "S3 lifecycle expiration counts whole days: at least 1."
  }
}

variable "task_retention_days" {
  description = "Days after which S3 deletes the task store's objects (the tasks/ prefix: records, markers, idempotency keys)."
  type        = number
  default     = 30

  validation {
    condition     = var.task_retention_days >= 1
    error_message = "S3 lifecycle expiration counts whole days: at least 1."
  }
}

variable "log_retention_days" {
  description = "CloudWatch log retention for the function."
  type        = number
  default     = 14
}

# product-photo-api on AWS: ECR image -> Lambda (with the Lambda Web Adapter baked into the image)
# behind an API Gateway HTTP API, uploads/results in a private S3 bucket reached via presigned URLs.

locals {
  bucket_name = var.bucket_name != "" ? var.bucket_name : "${var.name}-uploads-${var.account_id}-${var.aws_region}"
  image_uri   = var.image_uri != "" ? var.image_uri : "${aws_ecr_repository.api.repository_url}:latest"

  # The server's S3_TASKS_PREFIX: the task store (one record per task, idempotency keys, markers).
  tasks_prefix = "tasks/"

  # Every route the server has (`build/product-photo-api routes`); tests/infra/run.sh fails if this
  # list, the SAM events in template.yaml and the binary disagree. HEAD is not routed (API Gateway
  # matches methods exactly); OPTIONS preflights are answered by the API's CORS configuration.
  api_routes = [
    "GET /",
    "GET /static/{name}",
    "GET /healthz",
    "GET /config",
    "GET /openapi.json",
    "GET /metrics",
    "POST /upload",
    "POST /upload-url",
    "POST /upload-complete",
    "GET /files/{name}",
    "POST /generate",
    "GET /status",
    "GET /tasks",
    "GET /tasks/{task_id}",
    "GET /credits",
    "GET /results/{task_id}",
    "GET /results.zip",
    "POST /kie/callback",
  ]
}

# ---------------------------------------------------------------- ECR

resource "aws_ecr_repository" "api" {
  name                 = var.ecr_repository_name
  image_tag_mutability = "MUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }
}

# ---------------------------------------------------------------- S3

resource "aws_s3_bucket" "files" {
  bucket = local.bucket_name
}

resource "aws_s3_bucket_public_access_block" "files" {
  bucket = aws_s3_bucket.files.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "files" {
  bucket = aws_s3_bucket.files.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "files" {
  bucket = aws_s3_bucket.files.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

# Uploads only need to live until KIE has fetched them; kept results (S3_RESULTS_PREFIX, outside
# this prefix) stay. The prefix is the server's S3_PREFIX, set in the function's environment below.
# The task store (S3_TASKS_PREFIX) keeps its records, markers and idempotency keys for
# var.task_retention_days: /tasks then lists that long a history.
resource "aws_s3_bucket_lifecycle_configuration" "files" {
  bucket = aws_s3_bucket.files.id

  rule {
    id     = "expire-uploads"
    status = "Enabled"

    filter {
      prefix = "uploads/"
    }

    expiration {
      days = var.upload_expiration_days
    }
  }

  rule {
    id     = "expire-tasks"
    status = "Enabled"

    filter {
      prefix = local.tasks_prefix
    }

    expiration {
      days = var.task_retention_days
    }
  }
}

# Browsers PUT straight to presigned URLs (POST /upload-url) and GET results from them. The API's own
# origin (the web page at GET /) is always allowed, next to var.cors_origins.
resource "aws_s3_bucket_cors_configuration" "files" {
  bucket = aws_s3_bucket.files.id

  cors_rule {
    allowed_methods = ["PUT", "GET", "HEAD"]
    allowed_origins = distinct(concat(var.cors_origins, [aws_apigatewayv2_api.http.api_endpoint]))
    allowed_headers = ["*"]
    expose_headers  = ["ETag"]
    max_age_seconds = 3000
  }
}

# ---------------------------------------------------------------- IAM (least privilege)

data "aws_iam_policy_document" "assume_lambda" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "lambda" {
  name               = "${var.name}-lambda"
  assume_role_policy = data.aws_iam_policy_document.assume_lambda.json
}

resource "aws_cloudwatch_log_group" "lambda" {
  # Pre-created so the role needs no logs:CreateLogGroup.
  name              = "/aws/lambda/${var.name}"
  retention_in_days = var.log_retention_days
}

# By key prefix, never bucket/*: uploads (S3_PREFIX; the server deletes raw direct uploads under
# uploads/incoming/ once re-encoded), kept results (S3_RESULTS_PREFIX, read/write only) and the task
# store (S3_TASKS_PREFIX: it deletes released idempotency keys and lists its index and credits markers).
# s3:ListBucket only for listings under the tasks prefix; a GET of a missing key elsewhere (or there:
# the condition is about listings) gets S3's 403, which the server takes as "not found".
data "aws_iam_policy_document" "lambda" {
  statement {
    sid       = "UploadsReadWriteDelete"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.files.arn}/uploads/*"]
  }

  statement {
    sid       = "ResultsReadWrite"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${aws_s3_bucket.files.arn}/results/*"]
  }

  statement {
    sid       = "TasksReadWriteDelete"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    resources = ["${aws_s3_bucket.files.arn}/${local.tasks_prefix}*"]
  }

  statement {
    sid       = "TasksList"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.files.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.tasks_prefix}*"]
    }
  }

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }
}

resource "aws_iam_role_policy" "lambda" {
  name   = "${var.name}-lambda"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

# ---------------------------------------------------------------- Lambda

resource "aws_lambda_function" "api" {
  function_name = var.name
  role          = aws_iam_role.lambda.arn
  package_type  = "Image"
  image_uri     = local.image_uri
  architectures = [var.architecture]
  memory_size   = var.memory_size
  timeout       = var.timeout

  environment {
    # AWS_REGION is reserved: Lambda sets it (to var.aws_region) and rejects it here.
    # PORT=8000 and AWS_LWA_READINESS_CHECK_PATH=/healthz come from the image (Dockerfile).
    # Empty values (API_TOKEN, CALLBACK_SECRET) mean "unset" to the server.
    variables = {
      KIE_API_KEY       = var.kie_api_key
      KIE_BASE_URL      = var.kie_base_url
      KIE_MODEL         = var.kie_model
      USE_S3            = "1"
      S3_BUCKET         = aws_s3_bucket.files.bucket
      S3_PREFIX         = "uploads/"
      S3_RESULTS_PREFIX = "results/"
      S3_TASKS_PREFIX   = local.tasks_prefix
      S3_PRESIGN_TTL    = tostring(var.s3_presign_ttl)
      CORS_ORIGINS      = join(",", var.cors_origins)
      API_TOKEN         = var.api_token
      CALLBACK_SECRET   = var.callback_secret
      LOG_FORMAT        = "json"
      # Lambda's own limits, not the server's defaults: API Gateway cuts the integration at 30 s, so
      # KIE calls give up first (the server's 504 with a JSON body, not the gateway's own error) ...
      KIE_TIMEOUT_SECONDS = "25"
      # ... and a Lambda request carries at most 6 MB, base64 (about 4.4 MB of file) through /upload:
      # larger files get the server's clear 413 and go through /upload-url + /upload-complete instead.
      MAX_UPLOAD_BYTES = "4194304"
      # KIE's callBackUrl (<PUBLIC_BASE_URL>/kie/callback). No cycle: the API itself does not depend on
      # the function, only its integration does (tests/infra/check_tools.sh applies this against moto).
      PUBLIC_BASE_URL = aws_apigatewayv2_api.http.api_endpoint
      # API Gateway appends the caller's address to X-Forwarded-For: rate limits per real client
      TRUST_PROXY = "1"
    }
  }

  depends_on = [
    aws_iam_role_policy.lambda,
    aws_cloudwatch_log_group.lambda,
  ]
}

# ---------------------------------------------------------------- API Gateway (HTTP API)

resource "aws_apigatewayv2_api" "http" {
  name          = var.name
  protocol_type = "HTTP"

  # API Gateway answers OPTIONS preflights itself and replaces the Lambda's CORS headers.
  cors_configuration {
    allow_origins  = var.cors_origins
    allow_methods  = ["GET", "POST", "HEAD", "OPTIONS"]
    allow_headers  = ["content-type", "authorization", "idempotency-key"]
    expose_headers = ["x-request-id", "retry-after", "idempotent-replayed", "idempotency-key"]
    max_age        = 3600
  }
}

resource "aws_apigatewayv2_integration" "lambda" {
  api_id                 = aws_apigatewayv2_api.http.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.api.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 30000 # the maximum; KIE_TIMEOUT_SECONDS above stays below it
}

resource "aws_apigatewayv2_route" "api" {
  for_each = toset(local.api_routes)

  api_id    = aws_apigatewayv2_api.http.id
  route_key = each.value
  target    = "integrations/${aws_apigatewayv2_integration.lambda.id}"
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.http.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit = 50
    throttling_rate_limit  = 20
  }
}

resource "aws_lambda_permission" "apigw" {
  statement_id  = "AllowHttpApiInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.api.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.http.execution_arn}/*/*"
}

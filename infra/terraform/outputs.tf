output "api_endpoint" {
  description = "Base URL of the HTTP API ($default stage), e.g. https://abc123.execute-api.eu-west-1.amazonaws.com"
  # the API's endpoint, not the stage's invoke_url: that one ends in "/" and "$API/healthz" would become "//healthz"
  value = aws_apigatewayv2_api.http.api_endpoint
}

output "ecr_repository_url" {
  description = "Push the image here: docker push <ecr_repository_url>:latest"
  value       = aws_ecr_repository.api.repository_url
}

output "bucket_name" {
  description = "S3 bucket holding uploads and results (private; reached through presigned URLs)."
  value       = aws_s3_bucket.files.bucket
}

output "function_name" {
  description = "Lambda function name (for aws lambda update-function-code / logs)."
  value       = aws_lambda_function.api.function_name
}

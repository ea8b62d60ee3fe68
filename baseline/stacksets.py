"""Names the StackSets administration stack (stacks/stacksets_admin.py), the onboarding
template (scripts/onboarding.py) and the StackSets engine (scripts/stacksets.py) share.
No aws_cdk here: the driver imports it."""

#: In the MSP account: the role CloudFormation StackSets acts as (self-managed permissions).
ADMIN_ROLE_NAME = "vend-stacksets-admin"
#: In each client account: the role the administration role assumes to deploy instances.
EXECUTION_ROLE_NAME = "vend-stacksets-execution"
STACKSETS_ADMIN_STACK_NAME = "vend-msp-stacksets-admin"

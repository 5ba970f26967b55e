//! DescribeAcls, CreateAcls and DeleteAcls: Kafka's ACL administration, on the bindings the
//! node keeps with its other security state (applied to every connection at its next
//! request). Listing takes Describe on the cluster, changing Alter; while `[kafka]
//! authorizer` is off they answer SECURITY_DISABLED, as Kafka does without an authorizer.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_frontend::security::kafka_acl::{
    AclBinding, AclPermission, BindingFilter, CLUSTER, Operation, PatternType, ResourceType,
};

use crate::code;
use crate::guard;
use crate::session::Session;
use crate::state::Kafka;

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// The error every ACL request answers with before looking at its content, if any.
fn refused(k: &Kafka, session: &Session, api: &str, operation: Operation) -> Option<(i16, String)> {
    let refusal = if !k.config.authorizer {
        Some((
            code::SECURITY_DISABLED,
            "no authorizer is configured ([kafka] authorizer = false)".to_string(),
        ))
    } else {
        // Never open by default: with `allow_if_no_acl`, a cluster no binding names would
        // let anyone grant themselves everything.
        (!guard::allowed_strictly(k, session, operation, ResourceType::Cluster, CLUSTER)).then(
            || {
                (
                    code::CLUSTER_AUTHORIZATION_FAILED,
                    "not authorized on the cluster".to_string(),
                )
            },
        )
    };
    if let Some((c, _)) = &refusal {
        k.metrics.error(api, *c);
    }
    refusal
}

/// DescribeAcls: the bindings the filter matches, grouped by resource pattern.
pub fn describe(k: &Kafka, session: &Session, r: DescribeAclsRequest) -> DescribeAclsResponse {
    if let Some((c, why)) = refused(k, session, "DescribeAcls", Operation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(c)
            .with_error_message(Some(text(&why)));
    }
    let Some(filter) = BindingFilter::from_codes(
        r.resource_type_filter,
        r.resource_name_filter.as_deref(),
        r.pattern_type_filter,
        r.principal_filter.as_deref(),
        r.host_filter.as_deref(),
        r.operation,
        r.permission_type,
    ) else {
        k.metrics.error("DescribeAcls", code::INVALID_REQUEST);
        return DescribeAclsResponse::default()
            .with_error_code(code::INVALID_REQUEST)
            .with_error_message(Some(text("the filter names an unknown value")));
    };
    let acl = k.security.kafka_acl();
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in acl.bindings().iter().filter(|b| filter.matches(b)) {
        by_resource
            .entry((
                b.resource_type.code(),
                b.resource_name.clone(),
                b.pattern_type.code(),
            ))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(text(&b.principal))
                    .with_host(text(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    DescribeAclsResponse::default().with_resources(
        by_resource
            .into_iter()
            .map(|((t, name, p), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(t)
                    .with_resource_name(text(&name))
                    .with_pattern_type(p)
                    .with_acls(acls)
            })
            .collect(),
    )
}

fn binding(
    c: &kafka_protocol::messages::create_acls_request::AclCreation,
) -> Result<AclBinding, String> {
    let unknown = |what: &str| format!("unknown {what}");
    let b = AclBinding {
        resource_type: ResourceType::from_code(c.resource_type)
            .ok_or_else(|| unknown("resource type"))?,
        resource_name: c.resource_name.to_string(),
        pattern_type: PatternType::from_code(c.resource_pattern_type)
            .ok_or_else(|| unknown("pattern type"))?,
        principal: c.principal.to_string(),
        host: c.host.to_string(),
        operation: Operation::from_code(c.operation).ok_or_else(|| unknown("operation"))?,
        permission: AclPermission::from_code(c.permission_type)
            .ok_or_else(|| unknown("permission"))?,
    };
    b.validate()?;
    Ok(b)
}

/// CreateAcls: each creation is checked on its own; the valid ones are stored together.
pub async fn create(k: &Kafka, session: &Session, r: CreateAclsRequest) -> CreateAclsResponse {
    if let Some((c, why)) = refused(k, session, "CreateAcls", Operation::Alter) {
        return CreateAclsResponse::default().with_results(
            r.creations
                .iter()
                .map(|_| {
                    AclCreationResult::default()
                        .with_error_code(c)
                        .with_error_message(Some(text(&why)))
                })
                .collect(),
        );
    }
    let parsed: Vec<Result<AclBinding, String>> = r.creations.iter().map(binding).collect();
    let valid: Vec<AclBinding> = parsed
        .iter()
        .filter_map(|b| b.as_ref().ok().cloned())
        .collect();
    let stored = k.security.add_kafka_acls(&valid).map_err(|e| e.to_string());
    if stored.is_ok() {
        for b in &valid {
            audit(k, session, "kafka.acl.create", b).await;
        }
    }
    let results = parsed
        .into_iter()
        .map(|b| {
            let outcome = match (b, &stored) {
                (Err(why), _) => Err((code::INVALID_REQUEST, why)),
                (Ok(_), Err(why)) => Err((code::UNKNOWN_SERVER_ERROR, why.clone())),
                (Ok(_), Ok(())) => Ok(()),
            };
            match outcome {
                Ok(()) => AclCreationResult::default(),
                Err((c, why)) => {
                    k.metrics.error("CreateAcls", c);
                    AclCreationResult::default()
                        .with_error_code(c)
                        .with_error_message(Some(text(&why)))
                }
            }
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// DeleteAcls: removes what each filter matches, and lists it.
pub async fn delete(k: &Kafka, session: &Session, r: DeleteAclsRequest) -> DeleteAclsResponse {
    let refusal = refused(k, session, "DeleteAcls", Operation::Alter);
    let mut removed = Vec::new();
    let results = r
        .filters
        .iter()
        .map(|f| {
            if let Some((c, why)) = &refusal {
                return DeleteAclsFilterResult::default()
                    .with_error_code(*c)
                    .with_error_message(Some(text(why)));
            }
            let Some(filter) = BindingFilter::from_codes(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            ) else {
                k.metrics.error("DeleteAcls", code::INVALID_REQUEST);
                return DeleteAclsFilterResult::default()
                    .with_error_code(code::INVALID_REQUEST)
                    .with_error_message(Some(text("the filter names an unknown value")));
            };
            match k.security.delete_kafka_acls(&filter) {
                Ok(gone) => {
                    removed.extend(gone.iter().cloned());
                    DeleteAclsFilterResult::default().with_matching_acls(
                        gone.iter()
                            .map(|b| {
                                DeleteAclsMatchingAcl::default()
                                    .with_resource_type(b.resource_type.code())
                                    .with_resource_name(text(&b.resource_name))
                                    .with_pattern_type(b.pattern_type.code())
                                    .with_principal(text(&b.principal))
                                    .with_host(text(&b.host))
                                    .with_operation(b.operation.code())
                                    .with_permission_type(b.permission.code())
                            })
                            .collect(),
                    )
                }
                Err(e) => {
                    k.metrics.error("DeleteAcls", code::UNKNOWN_SERVER_ERROR);
                    DeleteAclsFilterResult::default()
                        .with_error_code(code::UNKNOWN_SERVER_ERROR)
                        .with_error_message(Some(text(&e.to_string())))
                }
            }
        })
        .collect();
    for b in &removed {
        audit(k, session, "kafka.acl.delete", b).await;
    }
    DeleteAclsResponse::default().with_filter_results(results)
}

/// Records an ACL change in the node's audit log, with the Kafka principal that made it.
async fn audit(k: &Kafka, session: &Session, action: &str, b: &AclBinding) {
    let target = format!(
        "{:?} {:?} {:?}:{} for {} from {} on {:?}",
        b.permission,
        b.operation,
        b.pattern_type,
        b.resource_name,
        b.principal,
        b.host,
        b.resource_type
    );
    let actor = format!("kafka:{}", guard::principal(session));
    strata_frontend::audit::record(&k.storage, action, &target, &actor).await;
}

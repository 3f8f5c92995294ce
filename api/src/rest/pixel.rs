//! `/pixel`: the tracking pixel's two public routes (no credential; the workspace is
//! named by its public pixel id). Browsers call them from any site, so they answer CORS
//! for any origin, without credentials.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{DataOut, ErrorOut};
use crate::application::pixel::{self, PixelConfig};
use crate::application::{AppState, Error, RequestContext, Result};
use crate::http::extract::{BeaconJson, QueryPairs};
use pulsar_domain::tracking::PixelHit;

/// The header naming the pixel.
pub const PIXEL_HEADER: &str = "x-pulsar-pixel";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(config))
        .routes(routes!(track))
        .route("/pixel/config", axum::routing::options(preflight))
        .route("/pixel/track", axum::routing::options(preflight))
        .layer(axum::middleware::map_response(cors))
}

/// CORS preflight: a page may send JSON and the pixel header.
async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "content-type, x-pulsar-pixel",
            ),
            (header::ACCESS_CONTROL_MAX_AGE, "86400"),
        ],
    )
        .into_response()
}

/// Any origin may call the pixel (it carries no credential).
async fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after, x-request-id"),
    );
    response
}

/// The pixel id from the header or the body/query, which must agree when both are given.
fn pixel_id(headers: &HeaderMap, given: Option<String>) -> Result<String> {
    let header = headers
        .get(PIXEL_HEADER)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| Error::BadRequest(format!("`{PIXEL_HEADER}` must be text.")))
        })
        .transpose()?;
    match (header, given) {
        (Some(a), Some(b)) if a != b => Err(Error::BadRequest(format!(
            "`{PIXEL_HEADER}` and `pixel_id` name different pixels."
        ))),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Err(Error::BadRequest(format!(
            "Name the pixel with `{PIXEL_HEADER}` or `pixel_id`."
        ))),
    }
}

/// What the pixel script needs: where to send events and the limits they must fit.
#[utoipa::path(get, path = "/pixel/config", tag = "pixel",
    params(("pixel_id" = Option<String>, Query, description = "The workspace's public pixel id (or the `x-pulsar-pixel` header)"),
        ("x-pulsar-pixel" = Option<String>, Header, description = "The workspace's public pixel id")),
    responses((status = 200, body = DataOut<PixelConfig>), (status = 400, body = ErrorOut),
        (status = 404, body = ErrorOut), (status = 429, body = ErrorOut)))]
async fn config(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response> {
    let mut given = None;
    for (name, value) in &query.0 {
        match name.as_str() {
            "pixel_id" if given.is_none() => given = Some(value.clone()),
            "pixel_id" => return Err(Error::BadRequest("`pixel_id` is given twice.".into())),
            other => {
                return Err(Error::BadRequest(format!(
                    "Unknown query parameter `{other}`."
                )))
            }
        }
    }
    // The window counts every request, so it runs before anything the caller sent is read.
    pixel::admit(&state, context.client_ip.0).await?;
    let id = pixel_id(&headers, given)?;
    let config = pixel::config(&state, &id).await?;
    Ok(axum::Json(json!({ "data": config })).into_response())
}

/// `POST /pixel/track`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackIn {
    /// The workspace's public pixel id, unless `x-pulsar-pixel` names it.
    pub pixel_id: Option<String>,
    /// `pageview`, or a name of the site's: 1 to 64 letters, digits or `_ . : -`.
    #[schema(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9_.:-]+$")]
    pub event: String,
    /// The page: an http(s) URL.
    #[schema(max_length = 2048)]
    pub url: String,
    #[schema(max_length = 2048)]
    pub referrer: Option<String>,
    #[schema(max_length = 512)]
    pub user_agent: Option<String>,
    /// At most 20 flat members: strings (up to 256 characters), numbers, booleans, null.
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Map<String, Value>>,
}

/// The tracked event's id (nothing the page sent is echoed).
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct Tracked {
    pub id: String,
}

/// Record one event from a page (a pageview counts one `pixel_events` unit).
#[utoipa::path(post, path = "/pixel/track", tag = "pixel", request_body = TrackIn,
    params(("x-pulsar-pixel" = Option<String>, Header, description = "The workspace's public pixel id")),
    responses((status = 202, body = DataOut<Tracked>), (status = 400, body = ErrorOut),
        (status = 403, body = ErrorOut, description = "The workspace's monthly pixel events are used up (`feature_limit_reached`)"),
        (status = 404, body = ErrorOut), (status = 413, body = ErrorOut), (status = 415, body = ErrorOut),
        (status = 422, body = ErrorOut), (status = 429, body = ErrorOut)))]
async fn track(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<Response> {
    pixel::admit(&state, context.client_ip.0).await?;
    let BeaconJson(input) =
        <BeaconJson<TrackIn> as axum::extract::FromRequest<AppState>>::from_request(
            request, &state,
        )
        .await?;
    let id = pixel_id(&headers, input.pixel_id)?;
    let hit = PixelHit {
        event: input.event,
        url: input.url,
        referrer: input.referrer.filter(|r| !r.is_empty()),
        user_agent: input
            .user_agent
            .or_else(|| Some(context.user_agent.clone()))
            .filter(|a| !a.is_empty()),
        properties: input.properties.unwrap_or_default(),
    };
    let tracked = pixel::track(&state, &context, &id, hit).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "data": Tracked { id: tracked } })),
    )
        .into_response())
}

"""Appearance of the visible points: surface frames, textured albedo, lighting, haze and sky.

Everything works on *planar* tensors ``(channels, pixels)``, so every op runs on contiguous memory
(several times faster on CPU than ``(pixels, 3)`` layouts). Per-primitive and per-material values
are gathered from small column tables, per-image constants broadcast from ``(rows, B, 1)``.

Lighting is linear RGB: ``albedo * (ambient + fill + key * visibility * max(n.l, 0)) + specular +
emission`` with a hemispheric ambient (sky colour from above, ground colour from below), one key light
whose visibility comes from shadow rays (the sun is a point light far away, without falloff) and one
shadowless directional fill light; then exponential haze.
"""

from __future__ import annotations

import torch

from depthkd.sim import scene as S
from depthkd.sim.primitives import SURFACE
from depthkd.sim.textures import NOISE_LAYER, POSITIVE, TextureBank

# Rows of the derived material table (see material_table). The first PIXEL_ROWS rows are gathered for
# every pixel; the rest (per-cell colour variation) and rarely used fields (emission, specular, road
# paint, from the raw material rows) only for the pixels whose flags ask for them: every gathered
# row costs a pass over all pixels.
M_A, M_DELTA_B = slice(0, 3), slice(3, 6)
M_UV = slice(6, 10)  # 2x2 matrix: local uv (m) -> texture uv (tiles), rotation / tile size
M_OFFSET_U, M_OFFSET_V = 10, 11
M_GRIME, M_GRIME_SCALE, M_FOOTPRINT, M_FLAGS = 12, 13, 14, 15
M_ATLAS_X, M_MEAN = 16, 17  # the pattern's column offset in the texture atlas, its mean value
PIXEL_ROWS = 18
M_DELTA_C = slice(18, 21)
MATERIAL_ROWS = 21
FLAG_EMISSION, FLAG_SPECULAR, FLAG_LANES, FLAG_CELL = 1, 2, 4, 8

# Rows of the per-image table (see image_table).
I_CAMERA, I_LIGHT, I_LIGHT_COLOUR = slice(0, 3), slice(3, 6), slice(6, 9)
I_INV_FALLOFF2 = 9
I_FILL_DIR, I_FILL_COLOUR = slice(10, 13), slice(13, 16)
I_AMBIENT_SKY, I_AMBIENT_GROUND = slice(16, 19), slice(19, 22)
I_HAZE_COLOUR, I_HAZE_DENSITY, I_FX = slice(22, 25), 25, 26
IMAGE_ROWS = 27

SUN_DISTANCE = 1e4  # the sun is shaded and shadowed as a point light this far away


def material_table(materials: torch.Tensor, bank: TextureBank) -> torch.Tensor:
    """Material rows ``(M, MAT_FIELDS)`` to the planar shading table ``(MATERIAL_ROWS, M)``.

    Albedo is ``A + (B - A) * pattern + (C - A) * variation * cell``, so the table stores ``A``,
    ``B - A`` and ``(C - A) * variation``.
    """
    angle = materials[:, S.MAT_ANGLE]
    tile = materials[:, S.MAT_TILE]
    cos, sin = torch.cos(angle), torch.sin(angle)
    colour_a = materials[:, S.MAT_COLOUR_A]
    variation = materials[:, S.MAT_VARIATION]
    flags = (
        FLAG_EMISSION * (materials[:, S.MAT_EMISSION].amax(1) > 0)
        + FLAG_SPECULAR * (materials[:, S.MAT_SPECULAR] > 0)
        + FLAG_LANES * (materials[:, S.MAT_LANES] > 0)
        + FLAG_CELL * (variation > 0)
    )
    return torch.cat([
        colour_a.t(),
        (materials[:, S.MAT_COLOUR_B] - colour_a).t(),
        torch.stack([cos / tile[:, 0], -sin / tile[:, 0], sin / tile[:, 1], cos / tile[:, 1]]),
        materials[:, S.MAT_OFFSET].t() + POSITIVE,
        materials[:, S.MAT_GRIME][None],
        (1.0 / materials[:, S.MAT_GRIME_TILE])[None],
        (1.0 / tile.amin(1))[None],
        flags.float()[None],
        bank.atlas_x(materials[:, S.MAT_PATTERN].long())[None],
        bank.pattern_mean.index_select(0, materials[:, S.MAT_PATTERN].long())[None],
        ((materials[:, S.MAT_COLOUR_C] - colour_a) * variation[:, None]).t(),
    ]).contiguous()


def flagged(flags: torch.Tensor, flag: int) -> torch.Tensor:
    """Indices of the pixels whose material has ``flag``; ``flags`` is :func:`pixel_flags`."""
    return (flags & flag).nonzero().squeeze(1)


def pixel_flags(mats: torch.Tensor) -> torch.Tensor:
    """The material flags of each pixel as ints ``(N,)`` (``mats``: the gathered table rows)."""
    return mats[M_FLAGS].int()


def light_positions(batch: S.SceneBatch) -> torch.Tensor:
    """Key light position per image ``(B, 3)``; a sun is placed far away along its direction."""
    far = batch.cam_position + SUN_DISTANCE * batch.light_position
    return torch.where(batch.light_is_point[:, None], batch.light_position, far)


def image_table(batch: S.SceneBatch) -> torch.Tensor:
    """Per-image shading constants ``(IMAGE_ROWS, B, 1)`` (broadcast over an image's pixels)."""
    inv_falloff2 = torch.where(batch.light_is_point, 1.0 / batch.light_falloff**2, torch.zeros_like(batch.light_falloff))
    return torch.cat([
        batch.cam_position.t(),
        light_positions(batch).t(),
        batch.light_colour.t(),
        inv_falloff2[None],
        batch.fill_direction.t(),
        batch.fill_colour.t(),
        batch.ambient_sky.t(),
        batch.ambient_ground.t(),
        batch.haze_colour.t(),
        batch.haze_density[None],
        batch.intrinsics[:, 0][None],
    ]).unsqueeze(-1).contiguous()


def dot(a, b) -> torch.Tensor:
    """Dot product of planar 3-vectors (anything indexable by component): three passes, not five."""
    return torch.addcmul(torch.addcmul(a[0] * b[0], a[1], b[1]), a[2], b[2])


def surface_frames(prims: torch.Tensor, kinds: torch.Tensor, view: torch.Tensor, t: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """World normals facing the viewer ``(3, N)``, face ids ``(N,)``, local texture coords ``(2, N)``
    and ``|normal . view|`` ``(N,)`` (the flip towards the viewer computes it anyway).

    ``prims`` is the gathered primitive table ``(15, N)`` (the camera relative to the primitive's
    centre, its row-major rotation, params 0-2); the hit point is ``t`` ``(N,)`` along the ray
    directions ``view`` ``(3, N)``.
    """
    rel = torch.addcmul(prims[0:3], view, t)  # hit point relative to the centre, in world axes
    rot = prims[3:12]  # rot[3*i + j] = R[i][j], R maps local to world
    local = torch.empty_like(rel)
    for j in range(3):
        torch.addcmul(torch.addcmul(rot[j] * rel[0], rot[3 + j], rel[1]), rot[6 + j], rel[2], out=local[j])
    # The most frequent kind is computed for every pixel (cheaper than a subset), the others on subsets.
    counts = torch.bincount(kinds, minlength=len(SURFACE)).tolist()
    base = max(range(len(SURFACE)), key=counts.__getitem__)
    params = prims[12:15]
    n, face, t = SURFACE[base](tuple(local), tuple(params))
    normal_local, uv = torch.stack(n), torch.stack(t)
    for kind, surface in enumerate(SURFACE):
        if kind == base or counts[kind] == 0:
            continue
        index = (kinds == kind).nonzero().squeeze(1)
        n, f, t = surface(tuple(local.index_select(1, index)), tuple(params.index_select(1, index)))
        normal_local.index_copy_(1, index, torch.stack(n))
        face.index_copy_(0, index, f)
        uv.index_copy_(1, index, torch.stack(t))
    normal = torch.empty_like(normal_local)
    for i in range(3):
        torch.addcmul(torch.addcmul(rot[3 * i] * normal_local[0], rot[3 * i + 1], normal_local[1]),
                      rot[3 * i + 2], normal_local[2], out=normal[i])
    towards = dot(normal, view)  # negative where the normal already faces the viewer
    return normal * towards.sign().neg_(), face, uv, towards.abs_()


def lane_markings(u: torch.Tensor, v: torch.Tensor, lanes: torch.Tensor) -> torch.Tensor:
    """Road paint mask: solid edge and centre lines, dashed lane lines; ``u, v`` in texture tiles.

    One tile spans the road's width in ``u`` (lines 2.4% of it wide) and one dash period in ``v``
    (a third painted: 3 m dashes with 6 m gaps for a 9 m tile).
    """
    u = u - u.floor()
    v = v - v.floor()
    position = u * lanes
    nearest = position.round()
    on_line = (position - nearest).abs() < 0.012 * lanes
    solid = (nearest <= 0) | (nearest >= lanes) | (nearest * 2 == lanes)
    return on_line & (solid | (v < 1.0 / 3.0))


def textured_albedo(bank: TextureBank, materials: torch.Tensor, table: torch.Tensor, mat_ids: torch.Tensor,
                    mats: torch.Tensor, flags: torch.Tensor, uv: torch.Tensor, pixel_size: torch.Tensor
                    ) -> torch.Tensor:
    """Albedo ``(3, N)`` of materials ``mat_ids`` at local coordinates ``uv`` (metres); ``pixel_size``
    (N,) is the pixel footprint in metres. ``table`` is the whole :func:`material_table`, ``mats``
    its first :data:`PIXEL_ROWS` rows gathered per pixel, ``flags`` their :func:`pixel_flags`."""
    m = mats[M_UV]
    tex_u = torch.addcmul(torch.addcmul(mats[M_OFFSET_U], m[0], uv[0]), m[1], uv[1])
    tex_v = torch.addcmul(torch.addcmul(mats[M_OFFSET_V], m[2], uv[0]), m[3], uv[1])
    pattern = bank.pattern(mats[M_ATLAS_X], tex_u, tex_v)
    # Texture filtering: fade to the pattern's mean as the footprint grows beyond a texel.
    blend = (pixel_size * mats[M_FOOTPRINT] * (0.25 * bank.size) - 0.25).clamp_(0.0, 1.0)
    pattern = torch.addcmul(pattern, mats[M_MEAN] - pattern, blend)
    albedo = torch.addcmul(mats[M_A], mats[M_DELTA_B], pattern)
    varied = flagged(flags, FLAG_CELL)
    if varied.numel():
        def sub(x: torch.Tensor) -> torch.Tensor:
            return x.index_select(-1, varied)

        cell = bank.cell(sub(mats[M_ATLAS_X]), sub(tex_u), sub(tex_v))
        delta_c = table[M_DELTA_C].index_select(1, sub(mat_ids))
        albedo.index_copy_(1, varied, torch.addcmul(sub(albedo), delta_c, cell).clamp_(0.0, 1.0))
    grime_scale = mats[M_GRIME_SCALE]
    positive = torch.tensor(POSITIVE, device=uv.device, dtype=uv.dtype)
    grime = bank.noise(torch.addcmul(positive, uv[0], grime_scale), torch.addcmul(positive, uv[1], grime_scale))
    albedo = albedo * (1.0 - mats[M_GRIME] * (grime - 0.3).clamp_min_(0.0))
    painted = flagged(flags, FLAG_LANES)
    if painted.numel():
        lanes = materials[:, S.MAT_LANES].index_select(0, mat_ids.index_select(0, painted))
        mask = lane_markings(tex_u.index_select(0, painted), tex_v.index_select(0, painted), lanes)
        paint = torch.tensor([[0.85], [0.85], [0.8]], device=uv.device, dtype=uv.dtype)
        albedo.index_copy_(1, painted, torch.where(mask, paint, albedo.index_select(1, painted)))
    return albedo


def shade(images: torch.Tensor, materials: torch.Tensor, mat_ids: torch.Tensor, flags: torch.Tensor,
          albedo: torch.Tensor, to_light: torch.Tensor, n_dot_to_light: torch.Tensor, normal: torch.Tensor,
          view: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Linear RGB ``(3, B, P)`` of the pixels of ``B`` images with ``P`` pixels each.

    Per-pixel inputs are ``(C, B, P)`` (``to_light``: from the surface point to the key light,
    ``n_dot_to_light`` its dot product with the normal, ``visible``: ``(B, P)``, 1 lit, 0 shadowed),
    ``images`` the per-image table ``(IMAGE_ROWS, B, 1)``; ``mat_ids`` ``(B*P,)``, their
    :func:`pixel_flags` and the raw material rows ``materials`` serve the few pixels with specular
    highlights or emission.
    """
    dist2 = dot(to_light, to_light)
    inv_dist = dist2.rsqrt()
    n_dot_l = (n_dot_to_light * inv_dist).clamp_min(0.0)
    strength = n_dot_l * visible / (1.0 + dist2 * images[I_INV_FALLOFF2])
    # Hemispheric ambient: ground + (sky - ground) * (1 + n_y) / 2, as one addcmul about the midpoint.
    sky, ground = images[I_AMBIENT_SKY], images[I_AMBIENT_GROUND]
    irradiance = torch.addcmul(0.5 * (sky + ground), 0.5 * (sky - ground), normal[1])
    irradiance = torch.addcmul(irradiance, images[I_FILL_COLOUR], dot(normal, images[I_FILL_DIR]).clamp_min(0.0))
    irradiance = torch.addcmul(irradiance, images[I_LIGHT_COLOUR], strength)
    colour = (albedo * irradiance).view(3, -1)
    per_image = normal.shape[-1]
    glossy = flagged(flags, FLAG_SPECULAR)
    if glossy.numel():
        def sub(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(*x.shape[:-2], -1).index_select(-1, glossy)

        # Gather only the two columns needed (a whole material row is 24 floats per pixel).
        gloss = materials[:, [S.MAT_SPECULAR, S.MAT_SHININESS]].t().contiguous()
        specular, shininess = gloss.index_select(1, mat_ids.index_select(0, glossy))
        g_view = sub(view)
        g_view = g_view * dot(g_view, g_view).rsqrt()
        half = sub(to_light) * sub(inv_dist) - g_view
        n_dot_h = (dot(sub(normal), half) * dot(half, half).rsqrt()).clamp(1e-6, 1.0)
        highlight = specular * torch.exp(shininess * torch.log(n_dot_h))
        lit = sub(strength) / sub(n_dot_l).clamp_min(1e-3)
        light = images[I_LIGHT_COLOUR, :, 0].index_select(1, glossy // per_image)
        colour.index_add_(1, glossy, light * (lit * highlight))
    glowing = flagged(flags, FLAG_EMISSION)
    if glowing.numel():
        emission = materials[:, S.MAT_EMISSION].t().contiguous().index_select(1, mat_ids.index_select(0, glowing))
        colour.index_add_(1, glowing, emission)
    return colour.view(3, *normal.shape[1:])


def apply_haze(images: torch.Tensor, colour: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
    """Exponential fog towards the haze colour over the ray length ``distance`` ``(B, P)``."""
    amount = 1.0 - torch.exp(-images[I_HAZE_DENSITY] * distance)
    return torch.addcmul(colour, images[I_HAZE_COLOUR] - colour, amount)


def sky_colour(bank: TextureBank, batch: S.SceneBatch, image: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Sky ``(3, N)`` seen along world ``dirs`` ``(3, N)``: gradient, clouds, a glow around the sun."""
    unit = dirs * dot(dirs, dirs).rsqrt()
    elevation = unit[1].clamp(0.0, 1.0)
    zenith = batch.sky_zenith.t().index_select(1, image)
    horizon = batch.sky_horizon.t().index_select(1, image)
    colour = torch.addcmul(horizon, zenith - horizon, elevation.sqrt())
    clouds = batch.clouds.index_select(0, image)
    cloudy = (clouds > 0).nonzero().squeeze(1)
    if cloudy.numel():
        lift = unit[1].index_select(0, cloudy).clamp_min(0.03)
        u = unit[0].index_select(0, cloudy) / lift * 0.15 + POSITIVE
        v = unit[2].index_select(0, cloudy) / lift * 0.15 + POSITIVE
        noise = bank.pattern(bank.atlas_x(torch.full_like(cloudy, NOISE_LAYER)), u, v)
        cover = ((noise - (1.0 - clouds.index_select(0, cloudy))) * 3.0).clamp(0.0, 1.0)
        cover = cover * (elevation.index_select(0, cloudy) / 0.3).clamp_max(1.0)
        colour.index_add_(1, cloudy, (0.95 - colour.index_select(1, cloudy)) * cover)
    sun = (~batch.light_is_point).float().index_select(0, image)
    glow = dot(unit, batch.light_position.t().index_select(1, image)).clamp_min(0.0) ** 64 * sun
    light = batch.light_colour.t().index_select(1, image)
    return colour + 0.6 * glow * light / light.amax(0, keepdim=True).clamp_min(1e-6)
